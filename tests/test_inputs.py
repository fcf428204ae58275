"""Inputs that real training produces, and that must not break ExpTest.

Each case here broke the transformation once: a non-finite or non-positive
first loss, a blow-up with `reset=False`, huge but finite gradients, a model collapsed to a constant predictor, `optax.inject_hyperparams`, array hyperparameters and
reverse-mode differentiation through `update`.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_exptest
from optax_exptest import Decision, Phase
from optax_exptest._src.window import window_size

from helpers import assert_trees_all_close, sweep
from problems import (least_squares_minimum, quadratic_problem, relu_regression,
                      rosenbrock, train)


def _decisions(records):
  return np.asarray(records[1])


def test_non_finite_first_loss_does_not_fix_the_scale_at_zero(x64):
  loss, params = quadratic_problem()
  tx = optax_exptest.exptest(1.0, sgd_correction=False)
  # One bad first batch, then the true losses; a blow-up at step 300.
  corrupt = lambda i, v: jnp.where(
      i == 0, jnp.nan, jnp.where(i == 300, 1e6, v)
  )
  _, state, records = train(tx, loss, params, 400, value_fn=corrupt)
  decisions = _decisions(records)
  assert decisions[0] == Decision.SKIPPED
  # The scale is the first finite loss, the window the paper's at that scale.
  first_finite = float(records[0][1])
  assert float(state.scales.loss) == pytest.approx(first_finite, rel=1e-6)
  # Without the correction the tested window is the paper's W (at least 4).
  assert int(state.window.length) == max(int(
      window_size(state.scales.loss, state.learning_rate)
  ), 4)
  assert int(state.window.length) > 4
  # The guard is on: the loss of 1e6 is flagged (and skipped, being alone);
  # the rate is not collapsed.
  assert decisions[300] == Decision.SKIPPED
  assert int(state.num_skipped) == 2
  assert int(state.num_cuts) < 10 and float(state.learning_rate) > 1e-4


@pytest.mark.parametrize("offset", sweep([-5.0, 0.0], default=[-5.0]))
def test_loss_at_or_below_zero_keeps_a_window_and_a_rate(offset):
  """A negative loss (an offset, an NLL) searches and tunes as usual."""
  loss, params = quadratic_problem()
  shifted = lambda p: loss(p) + offset - loss(params)  # first loss: offset
  tx = optax_exptest.exptest(1.0, sgd_correction=False)
  final, state, records = train(tx, shifted, params, 1000)
  assert int(state.window.length) > 4
  assert int(state.num_cuts) <= 8 and float(state.learning_rate) > 1e-3
  if offset < 0:
    # It converges and tunes: the scale, the first loss's distance to the
    # floor |L0 - loss_floor|, gives the window a length.
    assert int(state.phase) == Phase.TUNING
    minimum = least_squares_minimum(loss, params) + offset - loss(params)
    assert float(np.asarray(records[0])[-1]) - minimum < 1e-4
  # The divergence guard stays on, measured from that scale (at least L_min,
  # the scale of a first window of 4 losses, when L0 = 0: `window.py`).
  _, state, records = train(
      tx, shifted, params, 50, value_fn=lambda i, v: jnp.where(i == 40, 1e5, v)
  )
  assert _decisions(records)[40] == Decision.SKIPPED


def test_loss_floor_sets_the_scale():
  loss, params = quadratic_problem()
  tx = optax_exptest.exptest(0.01, sgd_correction=False, loss_floor=-5.0)
  _, state, records = train(tx, lambda p: loss(p) - 5.0, params, 2)
  assert float(state.scales.loss) == pytest.approx(
      float(loss(params)), rel=1e-5
  )


def test_reset_false_recovers_from_a_blow_up():
  """Rosenbrock from the origin at 0.1 diverges; the run must go on."""
  loss, params, optimum = rosenbrock()
  tx = optax_exptest.exptest(0.1, reset=False)
  final, state, records = train(tx, loss, params, 3000)
  decisions = _decisions(records)
  assert np.any(decisions == Decision.DIVERGED)
  assert np.all(np.isfinite(np.asarray(records[3])))
  # Not frozen: a few cuts, a usable rate, a loss far below the start.
  assert int(state.num_cuts) < 10 and float(state.learning_rate) > 1e-5
  assert float(np.asarray(records[0])[-1]) < 0.05 * float(loss(params))
  # The last steps are updates, not skips.
  assert decisions[-1] != Decision.DIVERGED


def test_huge_but_finite_gradients_do_not_count_as_divergence():
  loss, params = quadratic_problem()
  scaled = lambda p: 1e20 * loss(p)  # gradients near 1e20: finite in float32
  lr = 2e-21
  _, state, records = train(
      optax_exptest.exptest(lr, sgd_correction=True), scaled, params, 200
  )
  assert not np.any(_decisions(records) == Decision.DIVERGED)
  # Exactly SGD's trajectory while no window has ended.
  p = params
  for _ in range(200):
    p = jax.tree.map(lambda a, g: a - lr * g, p, jax.grad(scaled)(p))
  assert_trees_all_close(
      jax.tree.map(lambda x: x[-1], records[3]), p, rtol=1e-4, atol=1e-6
  )


@pytest.mark.slow  # test_contract.py's inject_hyperparams run is fast.
def test_inject_hyperparams_with_the_defaults():
  params = jnp.array([1.0, -2.0, 3.0])
  loss = lambda p: jnp.sum(p**2)
  plain = optax_exptest.exptest(0.1)
  injected = optax.inject_hyperparams(optax_exptest.exptest)(learning_rate=0.1)
  state, state_i = jax.jit(plain.init)(params), jax.jit(injected.init)(params)
  for _ in range(20):
    value, grads = jax.value_and_grad(loss)(params)
    updates, state = jax.jit(plain.update)(grads, state, params, value=value)
    updates_i, state_i = jax.jit(injected.update)(
        grads, state_i, params, value=value
    )
    assert_trees_all_close(updates_i, updates, rtol=1e-6)
    params = optax.apply_updates(params, updates)
  assert_trees_all_close(state_i.inner_state, state)
  assert optax_exptest.exptest_summary(state_i)["step"] == 20


def test_injected_learning_rate_is_the_starting_rate():
  loss, params = quadratic_problem()
  tx = optax.inject_hyperparams(optax_exptest.exptest)(learning_rate=30.0)
  step = jax.jit(lambda p, s: tx.update(
      jax.grad(loss)(p), s, p, value=loss(p)))
  state = tx.init(params)
  for _ in range(100):
    updates, state = step(params, state)
    params = optax.apply_updates(params, updates)
  # ExpTest cut the rate; the hyperparameter still says where it started.
  assert int(state.inner_state.num_cuts) >= 1
  assert float(state.hyperparams["learning_rate"]) == 30.0
  assert optax_exptest.exptest_summary(state)["learning_rate"] < 30.0
  # Setting it after init changes nothing (init has read it), and says so.
  state.hyperparams["learning_rate"] = jnp.asarray(1.0)
  with pytest.warns(UserWarning, match="from 30 to 1 after init"):
    a, _ = step(params, state)
  state.hyperparams["learning_rate"] = jnp.asarray(30.0)
  b, _ = step(params, state)
  assert_trees_all_close(a, b)


@pytest.mark.parametrize(
    "name", ["learning_rate", "alpha", "beta", "divergence_factor", "loss_floor"]
)
def test_array_hyperparameters_are_rejected_at_construction(name):
  kwargs = dict(learning_rate=0.1)
  kwargs[name] = jnp.array([0.05, 0.1]) * (1 if name != "divergence_factor" else 1e4)
  with pytest.raises(ValueError, match=f"{name} must be a scalar"):
    optax_exptest.exptest(**kwargs)


def test_schedules_are_rejected():
  with pytest.raises(ValueError, match="learning_rate must be a number"):
    optax_exptest.exptest(optax.constant_schedule(0.1))


def test_traced_capacity_says_how_to_fix_it():
  with pytest.raises(ValueError, match="static_args"):
    jax.jit(lambda c: optax_exptest.exptest(0.1, capacity=c).init(jnp.zeros(2)))(8)


@pytest.mark.parametrize("inner", sweep([None, "trace"], default=["trace"]))
def test_reverse_mode_through_update(inner):
  """Gradients flow through `-eta * u` (and inner); decisions are constants."""
  loss, params = quadratic_problem()
  make = lambda: optax.trace(0.9) if inner else None
  lr = 0.05

  def final_loss(p0, tx):
    p, state = p0, tx.init(p0)
    for _ in range(5):
      value, grads = jax.value_and_grad(loss)(p)
      updates, state = tx.update(grads, state, p, value=value)
      p = optax.apply_updates(p, updates)
    return loss(p)

  tx = optax_exptest.exptest(lr, inner=make(), sgd_correction=False)
  # The rate ExpTest starts at: lr, or (1 - 0.9) lr with momentum (inner_rules).
  rate = float(tx.init(params).learning_rate)
  reference = optax.chain(make() or optax.identity(), optax.scale(-rate))

  def reference_loss(p0):
    p, state = p0, reference.init(p0)
    for _ in range(5):
      updates, state = reference.update(jax.grad(loss)(p), state, p)
      p = optax.apply_updates(p, updates)
    return loss(p)

  # No window ends within 5 steps here, so ExpTest is SGD (or momentum) at lr.
  got = jax.jit(jax.grad(lambda p: final_loss(p, tx)))(params)
  want = jax.grad(reference_loss)(params)
  assert_trees_all_close(got, want, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("sgd_correction", sweep([False, True], default=[True]))
def test_a_collapse_to_a_constant_predictor_is_recovered(sgd_correction):
  """A first step at 0.5 kills every ReLU unit: the output bias then fits the
  targets' mean, an exponential decay the search test accepts. The collapse
  check must see it at two window ends in a row, return to the start and
  cut, and the run must train."""
  loss, params, constant_loss = relu_regression(offset=-1.0)
  tx = optax_exptest.exptest(0.5, sgd_correction=sgd_correction)
  final, state, records = train(tx, loss, params, 2000)
  values, decisions = np.asarray(records[0]), _decisions(records)
  # Each return to the start came from the check, not from a blow-up: the
  # losses were finite and below the divergence factor times L0.
  assert np.all(np.isfinite(values))
  assert np.all(values < 1e3 * values[0])
  assert np.sum(decisions == Decision.DIVERGED) >= 1
  # Confirmed at the second window's end: the first one saw the collapse
  # once (and passed the search test on the bias's decay).
  first = np.flatnonzero(decisions == Decision.DIVERGED)[0]
  assert np.count_nonzero(decisions[:first]) == 1
  assert int(state.num_resets) >= 1
  assert float(loss(final)) < 0.01 * constant_loss
  assert int(state.phase) == Phase.TUNING


def test_live_entries_and_the_collapse_rule():
  from optax_exptest._src import collapse
  f32 = jnp.float32
  tree = {"a": jnp.array([1.0, -1e-9, 0.0]), "b": jnp.full((3, 2), 0.5)}
  assert float(collapse.live_entries(tree, f32)) == 7.0
  assert float(collapse.live_entries({"a": jnp.zeros(4)}, f32)) == 0.0
  one = jnp.ones((), f32)
  scale = jnp.asarray(10.0, f32)
  # 1 live entry of 321: collapsed while the loss is above its floor ...
  assert bool(collapse.has_collapsed(one, 321 * one, one, scale))
  # ... not at an exact minimum, nor with no entry live, nor at 4 of 321.
  assert not bool(collapse.has_collapsed(one, 321 * one, 0 * one, scale))
  assert not bool(collapse.has_collapsed(0 * one, 321 * one, one, scale))
  assert not bool(collapse.has_collapsed(4 * one, 321 * one, one, scale))
  # A scale not yet known (0 live entries at the start) never collapses.
  assert not bool(collapse.has_collapsed(one, 0 * one, one, scale))


@pytest.mark.slow  # The collapse rule per arm; the rule itself is fast.
def test_collapse_check_under_vmap_acts_per_arm():
  """Vmapped over rates, the arm whose first step kills its units returns to
  the start where its single run does; the healthy arm never does."""
  loss, params, _ = relu_regression(offset=-1.0)
  run = lambda lr: train(
      optax_exptest.exptest(lr, sgd_correction=False), loss, params, 300)[2][1]
  rates = jnp.array([0.5, 0.01])
  batched = np.asarray(jax.jit(jax.vmap(run))(rates))
  for arm, rate in enumerate([0.5, 0.01]):
    alone = np.asarray(jax.jit(run)(jnp.asarray(rate)))
    diverged = np.flatnonzero(alone == Decision.DIVERGED)
    np.testing.assert_array_equal(
        np.flatnonzero(batched[arm] == Decision.DIVERGED), diverged)
  assert np.any(batched[0] == Decision.DIVERGED)
  assert not np.any(batched[1] == Decision.DIVERGED)
