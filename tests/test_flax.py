"""Flax integration, observability and checkpointing of ExpTest."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
import flax.linen as nn
import flax.serialization
from flax.training import train_state

import optax_exptest
from optax_exptest import flax_utils
from optax_exptest.flax_utils import TrainState

from helpers import assert_trees_all_close


def _regression_data(seed=0, n=64):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(n, 5)), jnp.float32)
  y = jnp.asarray(x @ rng.normal(size=(5, 1)) + 0.1 * rng.normal(size=(n, 1)),
                  jnp.float32)
  return x, y


def test_nnx_optimizer_forwards_the_loss():
  x, y = _regression_data()
  model = nnx.Linear(5, 1, rngs=nnx.Rngs(0))
  eta = optax_exptest.lr_upper_bound(np.asarray(x), loss="mse")
  optimizer = nnx.Optimizer(
      model, optax_exptest.exptest(eta, inner=optax.trace(0.9), sgd_correction=False),
      wrt=nnx.Param,
  )

  @nnx.jit
  def step(model, optimizer):
    loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
    optimizer.update(model, grads, value=loss)
    return loss

  losses = [float(step(model, optimizer)) for _ in range(150)]
  summary = optax_exptest.exptest_summary(optimizer.opt_state)
  assert summary["step"] == 150
  assert summary["phase_name"] == "tuning"
  assert losses[-1] < 0.1 * losses[0]


def test_nnx_update_without_value_is_a_clear_error():
  model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax_exptest.exptest(0.1), wrt=nnx.Param)
  grads = nnx.grad(lambda m: jnp.sum(m(jnp.ones((1, 2)))))(model)
  with pytest.raises(TypeError, match=r"call optimizer.update\(model, grads, value=loss\)"):
    optimizer.update(model, grads)


def test_linen_train_state_matches_a_plain_optax_loop():
  x, y = _regression_data()
  model = nn.Dense(1)
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  tx = optax_exptest.exptest(0.5, sgd_correction=False)
  loss_fn = lambda p: jnp.mean((model.apply({"params": p}, x) - y) ** 2)

  @jax.jit
  def linen_step(state):
    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads, value=loss)

  @jax.jit
  def optax_step(params, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params, value=loss)
    return optax.apply_updates(params, updates), opt_state

  state = TrainState.create(apply_fn=model.apply, params=params, tx=tx)
  plain, opt_state = params, tx.init(params)
  for _ in range(60):
    state = linen_step(state)
    plain, opt_state = optax_step(plain, opt_state)
  assert int(state.step) == 60
  assert_trees_all_close(state.params, plain, rtol=1e-6)
  assert_trees_all_close(state.opt_state, opt_state, rtol=1e-6)


@pytest.mark.slow  # Vmapped arms' summaries are also test_history.py's.
def test_summary_of_a_chain_and_of_vmapped_arms():
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax_exptest.exptest(0.1))
  params = jnp.zeros(3)

  def run(value):
    state = tx.init(params)
    _, state = tx.update(jnp.ones(3), state, params, value=value)
    return state

  single = optax_exptest.exptest_summary(run(2.0))
  assert single["step"] == 1 and single["phase_name"] == "searching"
  assert isinstance(single["learning_rate"], float)
  assert 0 < single["window_fill"] <= 1
  batched = optax_exptest.exptest_summary(jax.vmap(run)(jnp.array([1.0, 2.0, 3.0])))
  assert batched["step"] == [1, 1, 1]
  assert len(batched["window_length"]) == 3
  # W grows with L0: the three arms' first windows differ.
  assert len(set(batched["window_length"])) == 3
  with pytest.raises(ValueError, match="ExpTestState"):
    optax_exptest.exptest_summary(optax.sgd(0.1).init(params))


def test_summary_finds_the_state_where_flax_dropped_its_types():
  """`nnx.state(optimizer)` and state dicts hold the state as mappings."""
  model = nnx.Linear(3, 1, rngs=nnx.Rngs(0))
  tx = optax.chain(optax.clip(1.0), optax_exptest.exptest(0.1, inner=optax.trace(0.9)))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  grads = nnx.grad(lambda m: jnp.sum(m(jnp.ones((2, 3))) ** 2))(model)
  optimizer.update(model, grads, value=jnp.float32(2.0))
  expected = optax_exptest.exptest_summary(optimizer)
  assert expected["step"] == 1
  forms = {
      "nnx.state": nnx.state(optimizer),
      "nnx.to_pure_dict": nnx.to_pure_dict(nnx.state(optimizer)),
      "to_state_dict": flax.serialization.to_state_dict(optimizer.opt_state),
  }
  for name, form in forms.items():
    assert optax_exptest.exptest_summary(form) == expected, name
  rebuilt = optax_exptest.find_exptest_state(forms["nnx.state"])
  assert isinstance(rebuilt, optax_exptest.ExpTestState)
  assert type(rebuilt.window).__name__ == "WindowState"
  assert isinstance(rebuilt.learning_rate, jax.Array)
  # A state without ExpTest still names what to pass.
  with pytest.raises(ValueError, match="found 0 in a State.*nnx.state"):
    optax_exptest.exptest_summary(nnx.state(model))


def _linen_problem():
  x, y = _regression_data()
  model = nn.Dense(1)
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  loss_fn = lambda p: jnp.mean((model.apply({"params": p}, x) - y) ** 2)
  return model, params, loss_fn


def test_flax_stock_train_state_and_the_routes_that_pass_the_loss():
  model, params, loss_fn = _linen_problem()
  tx = optax_exptest.exptest(0.5, sgd_correction=False)
  stock = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)
  loss, grads = jax.value_and_grad(loss_fn)(params)
  # Flax's own apply_gradients never passes the loss to the update: the
  # error names it and the two routes.
  with _needs_the_loss() as raised:
    stock.apply_gradients(grads=grads, value=loss)
  for route in ("flax.training.train_state.TrainState.apply_gradients",
                "optax_exptest.flax_utils.TrainState",
                "optax_exptest.flax_utils.apply_gradients(state, grads=grads, value=loss)"):
    assert route in str(raised.value)
  with _needs_the_loss():  # under jit too
    jax.jit(lambda s: s.apply_gradients(grads=grads, value=loss))(stock)
  # Route 1: the module's function on Flax's stock state, whose type it keeps.
  routed = flax_utils.apply_gradients(stock, grads=grads, value=loss)
  assert type(routed) is train_state.TrainState and int(routed.step) == 1
  # Route 2: our TrainState; both equal a plain Optax step.
  ours = TrainState.create(apply_fn=model.apply, params=params, tx=tx)
  ours = ours.apply_gradients(grads=grads, value=loss)
  updates, opt_state = tx.update(grads, tx.init(params), params, value=loss)
  for state in (routed, ours):
    assert_trees_all_close(state.params, optax.apply_updates(params, updates), rtol=1e-6)
    assert_trees_all_close(state.opt_state, opt_state, rtol=1e-6)
  # A user's subclass with a field of its own keeps it, replaced as in Flax.

  class WithStats(train_state.TrainState):
    batch_stats: dict

  custom = WithStats.create(apply_fn=model.apply, params=params, tx=tx,
                            batch_stats={"mean": jnp.zeros(1)})
  custom = flax_utils.apply_gradients(custom, grads=grads, value=loss,
                                      batch_stats={"mean": jnp.ones(1)})
  assert type(custom) is WithStats and float(custom.batch_stats["mean"][0]) == 1.0
  assert_trees_all_close(custom.params, ours.params, rtol=1e-6)


def _needs_the_loss():
  return pytest.raises(TypeError, match=r"needs the training loss.*value=loss")


def test_train_state_overwrites_with_gradient_as_flax_does():
  """Params with Flax's overwrite-with-gradient collection (fp8 scales): the
  optimizer sees `params["params"]`, the collection takes the gradient."""
  owg = train_state.OVERWRITE_WITH_GRADIENT
  params = {"params": {"w": jnp.ones(3)}, owg: {"scale": jnp.ones(())}}
  tx = optax_exptest.exptest(0.1, sgd_correction=False)
  state = TrainState.create(apply_fn=None, params=params, tx=tx)
  grads = {"params": {"w": jnp.full(3, 2.0)}, owg: {"scale": jnp.array(5.0)}}
  state = state.apply_gradients(grads=grads, value=jnp.float32(1.0))
  updates, _ = tx.update(grads["params"], tx.init(params["params"]), params["params"],
                         value=jnp.float32(1.0))
  assert_trees_all_close(state.params["params"],
                         optax.apply_updates(params["params"], updates), rtol=1e-6)
  assert float(state.params[owg]["scale"]) == 5.0


def _checkpoint_problem():
  x, y = _regression_data(seed=1)
  tx = optax_exptest.exptest(2.0, inner=optax.trace(0.9))
  loss_fn = lambda w: jnp.mean((x @ w - y) ** 2)

  @jax.jit
  def step(w, state):
    loss, grads = jax.value_and_grad(loss_fn)(w)
    updates, state = tx.update(grads, state, w, value=loss)
    return optax.apply_updates(w, updates), state

  def run(w, state, steps):
    for _ in range(steps):
      w, state = step(w, state)
    return w, state

  w0 = jnp.zeros((5, 1))
  return tx, w0, run


def test_flax_serialization_round_trip_resumes_exactly():
  tx, w0, run = _checkpoint_problem()
  full = run(w0, tx.init(w0), 120)
  half = run(w0, tx.init(w0), 60)
  blob = flax.serialization.to_bytes(half)
  restored = flax.serialization.from_bytes((w0, tx.init(w0)), blob)
  resumed = run(*restored, 60)
  assert int(full[1].num_cuts) >= 1  # the resumed stretch has decisions to match
  assert_trees_all_close(resumed, full, rtol=0, atol=0)


def test_orbax_round_trip_resumes_exactly(tmp_path):
  ocp = pytest.importorskip("orbax.checkpoint")
  tx, w0, run = _checkpoint_problem()
  full = run(w0, tx.init(w0), 120)
  half = run(w0, tx.init(w0), 60)
  checkpointer = ocp.StandardCheckpointer()
  path = tmp_path / "exptest"
  checkpointer.save(path, half)
  checkpointer.wait_until_finished()
  template = jax.tree.map(ocp.utils.to_shape_dtype_struct, (w0, tx.init(w0)))
  restored = checkpointer.restore(path, template)
  assert type(restored[1]).__name__ == "ExpTestState"
  resumed = run(*restored, 60)
  assert_trees_all_close(resumed, full, rtol=0, atol=0)


@pytest.mark.slow  # An example's run, as the notebooks and the demo.
def test_cnn_example_smoke(tmp_path):
  from examples import flax_mnist_cnn
  acc, rows = flax_mnist_cnn.train(
      epochs=1, batch_size=64, subset=3072, log_path=tmp_path / "log.csv",
      quiet=True,
  )
  assert acc > 0.8
  assert len(rows) == 3072 // 64 and rows[-1]["step"] == 48
  header = (tmp_path / "log.csv").read_text().splitlines()[0].split(",")
  assert {"learning_rate", "phase", "num_cuts", "num_resets", "p_value",
          "window_fill", "loss"} <= set(header)
  assert (tmp_path / "log.png").stat().st_size > 10_000
