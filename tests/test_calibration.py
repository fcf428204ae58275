"""Calibration of the tests on simulated windows (float32, fixed seeds).

Rejection rates are means over 4000 windows, so their standard error is about
0.0035 at alpha = 0.05; the bands below are about four of those.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import sweep

from optax_exptest import stats

_ALPHA = 0.05
_WINDOWS = 4000
_BAND = 0.015

_exponential_batch = jax.jit(jax.vmap(stats.exponential_test))
_plateau_batch = jax.jit(jax.vmap(stats.plateau_test))
_weighted_batch = jax.jit(
    jax.vmap(
        lambda t, y, w: (
            stats.weighted_exponential_test(t, y, w),
            stats.weighted_plateau_test(t, y, w),
        )
    )
)


def _noise(seed: int, n: int, sd: float) -> jax.Array:
  return sd * jax.random.normal(
      jax.random.PRNGKey(seed), (_WINDOWS, n), jnp.float32
  )


def _rejection_rate(p: jax.Array) -> float:
  assert bool(jnp.all((p >= 0) & (p <= 1)))
  return float(jnp.mean(p < _ALPHA))


@pytest.mark.parametrize("n", [50, 120])
def test_plateau_type_one_error_on_flat_noise(n):
  rate = _rejection_rate(_plateau_batch(1.0 + _noise(n, n, 0.1)))
  assert abs(rate - _ALPHA) <= _BAND, rate


@pytest.mark.parametrize("n", [50, 120])
# Flat, steep and rising in make test; make test-all adds the gentle slopes.
@pytest.mark.parametrize(
    "slope", sweep([0.0, -1e-3, -1e-2, -0.1, 1e-2], default=[0.0, -0.1, 1e-2]))
def test_exponential_type_one_error_on_linear_noise(n, slope):
  t = jnp.arange(n, dtype=jnp.float32)
  noise = _noise(1000 + n + int(1e4 * abs(slope)), n, 0.1)
  rate = _rejection_rate(_exponential_batch(2.0 + slope * t + noise))
  assert rate <= _ALPHA + _BAND, rate


def _block_means(seed: int, trend) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Loss windows of block means, as the optimizer holds them.

  Each of 96 slots holds the mean of 1 to 8 consecutive losses (unit noise
  around `trend(step)`), weighted by its block size; 32 more slots are unused
  and hold garbage.
  """
  rng = np.random.default_rng(seed)
  used, capacity = 96, 128
  sizes = rng.integers(1, 9, size=(_WINDOWS, used))
  ends = np.cumsum(sizes, axis=1)
  centres = ends - (sizes + 1) / 2
  means = trend(centres) + rng.normal(size=(_WINDOWS, used)) / np.sqrt(sizes)
  pad = lambda a, fill: np.concatenate(
      [a, np.full((_WINDOWS, capacity - used), fill)], 1
  )
  return tuple(
      jnp.asarray(a, jnp.float32)
      for a in (pad(centres, -5.0), pad(means, 1e30), pad(sizes, 0.0))
  )


def test_weighted_block_means_type_one_error():
  # Flat: the plateau test; a decreasing line: the exponential test.
  _, p_plateau = _weighted_batch(*_block_means(7, lambda t: 0.0 * t))
  p_exp, _ = _weighted_batch(*_block_means(8, lambda t: -0.01 * t))
  assert abs(_rejection_rate(p_plateau) - _ALPHA) <= _BAND
  assert _rejection_rate(p_exp) <= _ALPHA + _BAND


def test_exponential_power():
  n = 120
  t = jnp.arange(n, dtype=jnp.float32)
  rate = _rejection_rate(
      _exponential_batch(2.0 * jnp.exp(-t / 30) + 0.3 + _noise(3000, n, 0.05))
  )
  assert rate >= 0.99, rate


def test_plateau_power_on_slow_decrease():
  # The plateau test is not calibrated by never rejecting.
  n = 120
  t = jnp.arange(n, dtype=jnp.float32)
  rate = _rejection_rate(_plateau_batch(1.0 - 2e-3 * t + _noise(4000, n, 0.1)))
  assert rate >= 0.9, rate
