"""lazy_cond and lazy_update: rare branches that stay rare under vmap."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optax_exptest._src.lazy_cond import lazy_cond
from optax_exptest._src.lazy_cond import lazy_update


def _counting_cond(calls):
  def expensive(x, y):
    jax.debug.callback(lambda: calls.append(1))
    return x * 10 + y

  return lambda x, y: lazy_cond(x > 2, expensive, lambda x, y: x + 0 * y, x, y)


def _reference(x, y):
  return np.where(x > 2, x * 10 + y, x)


@pytest.mark.parametrize("in_axes", [(0, 0), (0, None)])
def test_matches_select_semantics_under_vmap(in_axes):
  f = _counting_cond([])
  x = jnp.arange(6)
  y = jnp.ones(6, jnp.int32) if in_axes[1] == 0 else jnp.int32(1)
  np.testing.assert_array_equal(jax.vmap(f, in_axes)(x, y), _reference(x, y))


def test_nested_vmap_and_scan():
  f = _counting_cond([])
  x = jnp.arange(12).reshape(3, 4)
  out = jax.vmap(jax.vmap(f))(x, jnp.ones_like(x))
  np.testing.assert_array_equal(out, _reference(x, 1))

  def run(xs):
    return jax.lax.scan(lambda c, x: (c + f(x, c), None), 0, xs)[0]

  batched = jax.jit(jax.vmap(run))(x)
  looped = [run(row) for row in x]
  np.testing.assert_array_equal(batched, looped)


def test_rare_branch_runs_only_for_elements_that_take_it():
  calls = []
  f = jax.jit(jax.vmap(_counting_cond(calls)))
  f(jnp.arange(2), jnp.ones(2, jnp.int32)).block_until_ready()
  assert not calls  # no element takes the rare branch
  f(jnp.arange(5), jnp.ones(5, jnp.int32)).block_until_ready()
  assert len(calls) == 2  # elements 3 and 4 only, not all five


def test_unbatched_is_lax_cond():
  f = _counting_cond([])
  assert int(jax.jit(f)(3, 1)) == 31
  assert int(jax.jit(f)(1, 1)) == 1


def _counting_update(calls, batched="one_at_a_time"):
  def expensive(carry, y):
    jax.debug.callback(lambda: calls.append(1))
    return {"x": carry["x"] * 10 + y, "n": carry["n"] + 1}

  return lambda x, y: lazy_update(
      x > 2, expensive, {"x": x, "n": jnp.zeros_like(x)}, y, batched=batched
  )


@pytest.mark.parametrize("batched", ["one_at_a_time", "select"])
@pytest.mark.parametrize("in_axes", [(0, 0), (0, None)])
def test_update_matches_select_semantics_under_vmap(batched, in_axes):
  f = _counting_update([], batched)
  x = jnp.arange(6)
  y = jnp.ones(6, jnp.int32) if in_axes[1] == 0 else jnp.int32(1)
  out = jax.vmap(f, in_axes)(x, y)
  np.testing.assert_array_equal(out["x"], _reference(x, y))
  np.testing.assert_array_equal(out["n"], (np.arange(6) > 2).astype(int))


def test_update_under_nested_vmap_and_scan():
  f = _counting_update([])
  x = jnp.arange(12).reshape(3, 4)
  out = jax.vmap(jax.vmap(f))(x, jnp.ones_like(x))
  np.testing.assert_array_equal(out["x"], _reference(x, 1))

  def run(xs):
    return jax.lax.scan(lambda c, x: (c + f(x, c)["x"], None), 0, xs)[0]

  batched = jax.jit(jax.vmap(run))(x)
  looped = [run(row) for row in x]
  np.testing.assert_array_equal(batched, looped)


@pytest.mark.parametrize("batched, expected", [("one_at_a_time", 2), ("select", 1)])
def test_update_runs_fun_only_when_an_element_needs_it(batched, expected):
  calls = []
  f = jax.jit(jax.vmap(_counting_update(calls, batched)))
  f(jnp.arange(2), jnp.ones(2, jnp.int32))["x"].block_until_ready()
  assert not calls  # no element needs `fun`
  f(jnp.arange(5), jnp.ones(5, jnp.int32))["x"].block_until_ready()
  # Elements 3 and 4 one at a time, or one vmapped call over all five.
  assert len(calls) == expected


def test_update_unbatched_runs_at_most_once():
  calls = []
  f = jax.jit(_counting_update(calls))
  out = f(3, 1)
  assert int(out["x"]) == 31 and int(out["n"]) == 1 and len(calls) == 1
  out = f(1, 1)
  assert int(out["x"]) == 1 and int(out["n"]) == 0 and len(calls) == 1


def test_update_rejects_an_unknown_batching_mode():
  with pytest.raises(ValueError, match="batched must be"):
    lazy_update(True, lambda c: c, 1, batched="loop")


@pytest.mark.parametrize("batched", ["one_at_a_time", "select"])
def test_update_with_a_shared_predicate_and_batched_operands(batched):
  f = lambda x, y: lazy_update(x > 2, lambda c, k: c * 10 + k, x, y, batched=batched)
  y = jnp.arange(4)
  np.testing.assert_array_equal(jax.vmap(f, in_axes=(None, 0))(3, y), 30 + y)
  np.testing.assert_array_equal(jax.vmap(f, in_axes=(None, 0))(1, y), np.ones(4))
