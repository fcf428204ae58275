"""optax's contract for contrib optimizers, for `exptest`.

The cases of `optax/contrib/_common_test.py` and `_sharding_test.py` that
apply to a transformation that needs `value=`, with and without `inner`, in
float32 and under x64. Not applicable: the learning-rate-schedule case
(ExpTest sets the rate itself; a schedule is rejected, see test_inputs.py)
and init from abstract `jax.ShapeDtypeStruct` parameters (the state keeps the
initial parameters as its anchor, as dog or prodigy keep concrete values;
`jax.eval_shape(tx.init, ...)` is tested instead).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_exptest

from helpers import (
    assert_trees_all_close, diagonal, log_compilations, product, sweep,
)
from problems import CONTRACT_TARGETS, rosenbrock

INNERS = {
    "sgd": lambda: None,
    "momentum": lambda: optax.trace(0.9),
    "adam": lambda: optax.scale_by_adam(),
}
# Starting rates above what each update rule tolerates on Rosenbrock, so that
# every run has to search.
RATES = {"sgd": 0.1, "momentum": 0.1, "adam": 0.3}

# Each case compiles ExpTest's update anew (a few seconds, most of a case's
# time), so `make test` runs each inner, dtype and problem at least once and
# `make test-all` their products (`helpers.sweep`).
_NAMES = sorted(INNERS)
_TARGETS = sorted(CONTRACT_TARGETS)


def _exptest(inner: str, **kwargs):
  return optax_exptest.exptest(RATES[inner], inner=INNERS[inner](), **kwargs)


def _step(opt, loss, **update_kwargs):
  @jax.jit
  def step(params, state):
    value, grads = jax.value_and_grad(loss)(params)
    updates, state = opt.update(grads, state, params, value=value, **update_kwargs)
    return optax.apply_updates(params, updates), state
  return step


@pytest.mark.parametrize("inner", sweep(_NAMES, default=["momentum"]))
def test_extra_args_and_no_recompilation(inner, x64):
  loss, params, _ = rosenbrock()
  opt = _exptest(inner)
  step = _step(opt, loss, unexpected_extra_args_your_optimizer_doesnt_expect=1)
  state = opt.init(params)
  for _ in range(2):
    params, state = step(params, state)
  with log_compilations() as compiled:
    params, state = step(params, state)
  assert not compiled, compiled


@pytest.mark.parametrize(
    "inner, target",
    sweep(product(_NAMES, _TARGETS), default=diagonal(_NAMES, _TARGETS)))
def test_converges_in_a_long_scan(inner, target, x64):
  loss, initial, final = CONTRACT_TARGETS[target]()
  opt = _exptest(inner)
  state = optax.tree.map_params(opt, lambda v: v, opt.init(initial))
  step = _step(opt, loss)
  (params, state), _ = jax.lax.scan(
      lambda c, _: (step(*c), None), (initial, state), length=30_000
  )
  assert_trees_all_close(params, final, rtol=3e-2, atol=3e-2)


_DTYPES = ["bfloat16", "float16", "float32"]


@pytest.mark.parametrize(
    "inner, dtype", sweep(product(_NAMES, _DTYPES), default=diagonal(_NAMES, _DTYPES)))
def test_updates_keep_the_parameters_dtype(inner, dtype):
  opt = _exptest(inner)
  params = jnp.array([1.0, 2.0], dtype)
  value, grads = jax.value_and_grad(lambda x: jnp.sum(x**2))(params)
  state = jax.jit(opt.init)(params)
  updates, _ = jax.jit(opt.update)(grads, state, params, value=value)
  assert updates.dtype == params.dtype


@pytest.mark.parametrize(
    "inner, dtype",
    sweep(product(_NAMES, ["bfloat16", "float32"]),
          default=[("adam", "bfloat16"), ("sgd", "float32")]))
def test_inside_multi_steps(inner, dtype):
  opt = optax.MultiSteps(_exptest(inner), every_k_schedule=4)
  params = jnp.array([1.0, 2.0], dtype)
  value, grads = jax.value_and_grad(lambda x: jnp.sum(x**2))(params)
  state = jax.jit(opt.init)(params)
  update = jax.jit(opt.update)
  for k in range(4):
    updates, state = update(grads, state, params, value=value)
    if k < 3:
      assert np.all(np.asarray(updates) == 0)
  # The fourth mini-step applies ExpTest once, to the mean gradient.
  assert np.all(np.asarray(updates) != 0)
  assert optax_exptest.exptest_summary(state)["step"] == 1


_COND_DTYPES = [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64]


@pytest.mark.parametrize(
    "inner, dtype",
    # float64 (a second compilation under x64) in make test-all.
    sweep(product(_NAMES, _COND_DTYPES), default=diagonal(_NAMES, _COND_DTYPES[:3])))
def test_state_is_dtype_and_shape_stable_under_cond(inner, dtype):
  with jax.enable_x64(dtype == jnp.float64):
    opt = _exptest(inner)
    loss, params, _ = CONTRACT_TARGETS["parabola"](dtype)

    @jax.jit
    def step(params, state):
      value, grads = jax.value_and_grad(loss)(params)
      # A loss of another dtype than the parameters, as optax's test does.
      value = value.astype(jnp.float16 if dtype != jnp.float16 else jnp.bfloat16)
      take = jax.random.randint(jax.random.key(0), (), 0, 2) == 0
      updates, state = jax.lax.cond(
          take, lambda: opt.update(grads, state, params, value=value),
          lambda: (params, state),
      )
      return optax.apply_updates(params, updates), state

    state = opt.init(params)
    types = jax.tree.map(jax.typeof, state)
    for _ in range(2):
      params, state = step(params, state)
      assert params.dtype == dtype
      assert jax.tree.map(jax.typeof, state) == types


@pytest.mark.parametrize("inner", sweep(_NAMES, default=["adam"]))
def test_inject_hyperparams_gives_the_same_run(inner):
  factory = functools.partial(optax_exptest.exptest, inner=INNERS[inner]())
  opt = factory(RATES[inner])
  injected = optax.inject_hyperparams(factory)(RATES[inner])
  params = [-jnp.ones((2, 3)), jnp.ones((2, 5, 2))]
  grads = [jnp.ones((2, 3)), -jnp.ones((2, 5, 2))]
  value = jnp.array(1.0)
  updates, state = jax.jit(opt.update)(
      grads, jax.jit(opt.init)(params), params, value=value
  )
  updates_i, state_i = jax.jit(injected.update)(
      grads, jax.jit(injected.init)(params), params, value=value
  )
  assert_trees_all_close(updates_i, updates, rtol=1e-5)
  assert_trees_all_close(state_i.inner_state, state, rtol=1e-5, atol=1e-5)


def test_abstract_init():
  shapes = jax.eval_shape(
      _exptest("adam").init, jax.ShapeDtypeStruct((2, 4, 8), jnp.float32)
  )
  assert shapes.anchor_params.shape == (2, 4, 8)


@pytest.mark.parametrize("inner", sweep(_NAMES, default=["sgd"]))
def test_sharding_types_are_stable(inner):
  if len(jax.devices()) < 8:
    pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8")
  mesh = jax.make_mesh((8,), ("x",), axis_types=(jax.sharding.AxisType.Explicit,))
  sharding = jax.sharding.NamedSharding(mesh, jax.P(None, "x"))
  opt = _exptest(inner)
  with jax.set_mesh(mesh):
    params = jnp.zeros((2, 8, 4), dtype=jnp.float16, out_sharding=sharding)
    value = jnp.float32(1.0)
    state0 = opt.init(params)
    _, state1 = opt.update(params, state0, params, value=value)
    _, state2 = jax.jit(opt.update)(params, state0, params, value=value)
    types = [jax.tree.map(jax.typeof, s) for s in (state0, state1, state2)]
    assert types[0] == types[1] == types[2]
    assert jax.tree.map(jax.typeof, jax.jit(opt.init)(params)) == types[0]
