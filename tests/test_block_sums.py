"""The block-averaged loss window."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optax_exptest._src import block_sums


def _fill(capacity, values):
  window = block_sums.empty(capacity, jnp.float32)
  for v in values:
    if block_sums.is_full(window):
      window = block_sums.merge(window)
    window = block_sums.push(window, jnp.float32(v))
  return window


@pytest.mark.parametrize("capacity", [4, 5, 8, 16])
@pytest.mark.parametrize("length", [1, 3, 8, 17, 40, 100])
def test_points_are_block_means(capacity, length):
  rng = np.random.default_rng(capacity * 1000 + length)
  values = rng.normal(size=length).astype(np.float32)
  window = _fill(capacity, values)
  t, y, w = map(np.asarray, block_sums.points(window))
  k = int(window.block_size)
  used = w > 0
  assert used.sum() <= capacity
  assert w.sum() == length
  # Each occupied slot is the mean of its block of consecutive losses.
  for i in np.nonzero(used)[0]:
    block = values[i * k: i * k + int(w[i])]
    np.testing.assert_allclose(y[i], block.mean(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t[i], i * k + (len(block) - 1) / 2)
  # Blocks are consecutive and all full but the last.
  assert np.all(w[used][:-1] == k)
  assert np.all(np.isfinite(t)) and np.all(np.isfinite(y))


def test_memory_is_independent_of_window_length():
  short, long = _fill(8, np.ones(5)), _fill(8, np.ones(1000))
  assert jax.tree.map(jnp.shape, short) == jax.tree.map(jnp.shape, long)
  assert int(long.block_size) == 128


def test_clear_and_empty_slots_are_masked():
  window = block_sums.clear(_fill(8, [np.inf, 1.0, 2.0]))
  window = block_sums.push(window, jnp.float32(3.0))
  t, y, w = block_sums.points(window)
  assert float(w.sum()) == 1 and float(y[0]) == 3.0
