"""The ExpTest transformation: the paper's rule, jit/vmap/scan/sharding, resets."""
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_exptest
from optax_exptest import Decision, Phase
from optax_exptest._src.window import window_size

from helpers import assert_trees_all_close, log_compilations, sweep
from problems import (
    jitted_step, least_squares_minimum, logistic_problem, quadratic_problem,
    train,
)

TRACES = (
    pathlib.Path(__file__).resolve().parents[1]
    / "data" / "exptest_reference_traces" / "train_losses_cali_algo.txt"
)

# docs/design.md (the replay fixture): decisions of the authors' California runs, as the index
# of the loss that completed each window.
REPLAY = {
    "0": ([5], [23], [95, 689, 6429]),
    "1": ([4], [19], [34, 304, 6058]),
    "2": ([4], [20], [36, 379]),
    "3": ([5], [22], [39, 351, 4276]),
    "4": ([5], [23], [41, 257, 4217]),
}


@pytest.fixture(scope="module")
def reference_traces():
  return json.loads(TRACES.read_text())


@pytest.mark.parametrize("trial", sorted(REPLAY))
def test_replay_of_the_authors_runs(reference_traces, trial):
  losses = jnp.asarray(np.asarray(reference_traces[trial][0], np.float32))
  tx = optax_exptest.exptest(0.985, sgd_correction=False, divergence_factor=None)
  params = jnp.zeros(2)
  grads = jnp.ones(2)

  def step(state, value):
    _, state = tx.update(grads, state, params, value=value)
    return state, state.decision

  _, decisions = jax.jit(lambda s, ls: jax.lax.scan(step, s, ls))(
      tx.init(params), losses
  )
  decisions = np.asarray(decisions)
  resets, passes, cuts = REPLAY[trial]
  assert list(np.nonzero(decisions == Decision.RESTART)[0]) == resets
  assert list(np.nonzero(decisions == Decision.EXPONENTIAL)[0]) == passes
  assert list(np.nonzero(decisions == Decision.PLATEAU)[0]) == cuts
  assert not np.any(decisions == Decision.DIVERGED)


def test_decreasing_windows_between_cuts(reference_traces):
  """After the exponential pass, windows of W losses end in t-tests."""
  losses = jnp.asarray(np.asarray(reference_traces["0"][0][:200], np.float32))
  tx = optax_exptest.exptest(0.985, sgd_correction=False, divergence_factor=None)
  state = tx.init(jnp.zeros(1))
  seen = []
  step = jax.jit(lambda s, v: tx.update(jnp.ones(1), s, jnp.zeros(1), value=v)[1])
  for i, v in enumerate(losses):
    state = step(state, v)
    if int(state.decision) != Decision.NONE:
      seen.append((i, int(state.decision)))
  # W at 0.985 * 0.33 is 18: tests at 41, 59, 77 pass, 95 cuts.
  assert seen[:6] == [
      (5, Decision.RESTART), (23, Decision.EXPONENTIAL),
      (41, Decision.DECREASING), (59, Decision.DECREASING),
      (77, Decision.DECREASING), (95, Decision.PLATEAU),
  ]


def test_window_size_is_the_papers():
  # 2 sqrt(2) L0 / (e eta), rounded half to even.
  l0, eta = 5.577943325042725, 0.985
  expected = round(2 * np.sqrt(2) * l0 / (np.e * eta))
  assert int(window_size(l0, eta)) == expected == 6


@pytest.mark.parametrize(
    "gradients, expected",
    [
        ("zero", lambda w: w),  # no information: c_w = 1
        ("constant", lambda w: w),  # a straight path: c_w = 1
        ("alternating", lambda w: 2**30),  # cancelling exactly: unbounded
        ("noisy", None),  # zig-zag: c_w > 1
    ],
)
def test_mini_batch_correction(gradients, expected):
  rng = np.random.default_rng(0)
  tx = optax_exptest.exptest(0.1, divergence_factor=None)
  params = jnp.zeros(4)
  state = tx.init(params)
  step = jax.jit(lambda s, g: tx.update(g, s, params, value=1.0)[1])
  base = None
  for i in range(200):
    g = {
        "zero": np.zeros(4),
        "constant": np.ones(4),
        "alternating": (-1.0) ** i * np.ones(4),
        "noisy": np.ones(4) + 3 * rng.normal(size=4),
    }[gradients]
    state = step(state, jnp.asarray(g, jnp.float32))
    base = int(state.window.base_length)
    if not state.window.measuring:
      break
  n = int(state.window.length)
  if expected is None:
    assert n > 1.5 * base
  else:
    assert n == max(expected(base), 4)


def test_correction_is_measured_afresh_after_a_cut():
  """The gradients before a cut must not leak into the next c_w."""
  rng = np.random.default_rng(1)
  tx = optax_exptest.exptest(0.1, divergence_factor=None)
  params = jnp.zeros(4)
  state = tx.init(params)
  step = jax.jit(lambda s, g: tx.update(g, s, params, value=1.0)[1])
  for _ in range(500):  # Zig-zag gradients on a flat loss: c_w > 1, a cut.
    state = step(state, jnp.asarray(1 + 3 * rng.normal(size=4), jnp.float32))
    if int(state.num_cuts):
      break
  assert int(state.decision) == Decision.RESTART
  window = max(int(state.window.base_length), 4)
  # A straight path after the cut: c_w = 1, so the flat window is tested
  # (and fails) after exactly `window` steps.
  for steps in range(1, 500):
    state = step(state, jnp.ones(4))
    if int(state.num_cuts) == 2:
      break
  assert steps == window


def test_converges_and_switches_to_tuning(x64):
  loss, params = quadratic_problem()
  tx = optax_exptest.exptest(1.0, sgd_correction=False)
  final, state, (values, decisions, _, _) = train(tx, loss, params, 400)
  assert int(state.phase) == Phase.TUNING
  best = least_squares_minimum(loss, params)
  assert float(values[-1]) - best < 0.01 * (float(values[0]) - best)
  assert np.all(np.isfinite(np.asarray(values)))
  dtype = jnp.float64 if x64 else jnp.float32
  assert state.learning_rate.dtype == dtype
  assert jax.tree.map(lambda x: x.dtype, final) == jax.tree.map(
      lambda x: x.dtype, params
  )


def test_no_recompilation_over_100jitted_steps():
  loss, params = quadratic_problem()
  tx = optax_exptest.exptest(0.5, sgd_correction=True)
  step = jitted_step(tx, loss)
  state = tx.init(params)
  params, state = step(params, state)  # compiles once
  with log_compilations() as compiled:
    for _ in range(100):
      params, state = step(params, state)
  assert not compiled, compiled
  assert int(state.step) == 101


def test_vmap_over_arms_with_traced_rate_and_alpha(reference_traces):
  """Each vmapped arm decides exactly as the same ExpTest run alone."""
  losses = jnp.asarray(np.asarray(reference_traces["1"][0][:3000], np.float32))
  params, grads = jnp.zeros(2), jnp.ones(2)

  def run(lr, alpha):
    tx = optax_exptest.exptest(
        lr, alpha, sgd_correction=False, divergence_factor=None
    )

    def step(state, value):
      _, state = tx.update(grads, state, params, value=value)
      return state, (state.decision, state.learning_rate, state.p_value)

    return jax.lax.scan(step, tx.init(params), losses)[1]

  lrs = jnp.array([0.985, 0.5, 2.0, 0.985])
  alphas = jnp.array([0.05, 0.01, 0.1, 0.2])
  batched = jax.jit(jax.vmap(run))(lrs, alphas)
  for i in range(4):
    single = jax.jit(run)(lrs[i], alphas[i])
    assert_trees_all_close(jax.tree.map(lambda x: x[i], batched), single)
  # The arms really differ: not all took the same decisions.
  assert len({tuple(np.asarray(d)) for d in batched[0]}) >= 3


@pytest.mark.slow  # vmap against single runs is also the replay arms' test (fast).
def test_vmapped_training_matches_single_runs_until_decisions_differ():
  loss, params = quadratic_problem()

  def run(lr):
    return train(optax_exptest.exptest(lr), loss, params, 100)[2]

  lrs = jnp.array([3.0, 1.0, 0.3, 0.1])
  batched = jax.jit(jax.vmap(run))(lrs)
  for i in range(4):
    values, decisions, _, _ = jax.jit(run)(lrs[i])
    np.testing.assert_allclose(batched[0][i, :30], values[:30], rtol=1e-4)
    assert np.all(np.isfinite(np.asarray(batched[0][i])))


def test_scan_equals_python_loop():
  loss, params = quadratic_problem()
  tx = optax_exptest.exptest(2.0, sgd_correction=True)
  scanned, _, _ = jax.jit(lambda p: train(tx, loss, p, 60))(params)
  step = jitted_step(tx, loss)
  state = tx.init(params)
  looped = params
  for _ in range(60):
    looped, state = step(looped, state)
  assert_trees_all_close(scanned, looped, rtol=1e-5, atol=1e-6)


def test_chained_after_momentum_and_learning_rate_lookup():
  loss, params = quadratic_problem()
  tx = optax.chain(optax.trace(decay=0.9), optax_exptest.exptest(0.3))
  final, state, (values, _, _, _) = train(tx, loss, params, 200)
  rate = optax.tree.get(state, "learning_rate")
  assert rate.shape == () and 0 < float(rate) <= 0.3
  assert float(loss(final)) < float(values[0])


# The sharding contract (state types) is in test_contract.py's fast tier;
# this run over 8 devices compiles two programs of 30 steps.
@pytest.mark.slow
def test_sharded_params_over_8_devices():
  devices = jax.devices()
  if len(devices) < 8:
    pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8")
  mesh = jax.sharding.Mesh(np.array(devices[:8]), ("x",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("x"))
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.normal(size=(64, 32)), jnp.float32)
  b = jnp.asarray(rng.normal(size=(64,)), jnp.float32)
  loss = lambda w: 0.5 * jnp.mean((a @ w - b) ** 2)
  tx = optax_exptest.exptest(0.5)
  step = jitted_step(tx, loss)

  def run(w):
    state = tx.init(w)
    for _ in range(30):
      w, state = step(w, state)
    return w, state

  w_sharded, state_sharded = run(jax.device_put(jnp.zeros(32), sharding))
  w_plain, state_plain = run(jnp.zeros(32))
  assert w_sharded.sharding.is_equivalent_to(sharding, 1)
  assert state_sharded.correction.displacement.sharding.is_equivalent_to(sharding, 1)
  assert len(w_sharded.addressable_shards) == 8
  np.testing.assert_allclose(w_sharded, w_plain, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(state_sharded.num_cuts, state_plain.num_cuts)


def test_start_far_above_the_bound_recovers_without_nan():
  loss, params, x = logistic_problem()
  eta_max = optax_exptest.lr_upper_bound(x)
  tx = optax_exptest.exptest(100 * eta_max)
  final, state, (values, decisions, rates, trajectory) = train(
      tx, loss, params, 2000
  )
  for leaf in jax.tree.leaves(trajectory):
    assert np.all(np.isfinite(np.asarray(leaf)))
  assert int(state.num_cuts) >= 2 and int(state.num_resets) >= 1
  assert float(state.learning_rate) < 2 * eta_max
  assert float(values[-1]) < float(values[0])


def test_non_finite_values_never_reach_the_parameters():
  """With a patience of 1 every fault is a divergence: back to the anchor."""
  loss, params = quadratic_problem()
  tx = optax_exptest.exptest(0.5, divergence_patience=1)
  state = tx.init(params)
  grads = jax.tree.map(lambda p: jnp.full_like(p, jnp.nan), params)
  step = jax.jit(lambda g, s, p, v: tx.update(g, s, p, value=v))
  _, state = step(jax.grad(loss)(params), state, params, loss(params))
  moved = jax.tree.map(lambda p: p + 0.1, params)
  updates, state = step(grads, state, moved, jnp.float32(1.0))
  assert int(state.decision) == Decision.DIVERGED
  assert int(state.num_resets) == 1
  new = optax.apply_updates(moved, updates)
  assert_trees_all_close(new, params, atol=1e-6)
  updates, state = step(
      jax.grad(loss)(params), state, params, jnp.float32(jnp.inf)
  )
  assert all(np.all(np.isfinite(u)) for u in jax.tree.leaves(updates))
  assert int(state.decision) == Decision.DIVERGED


def test_skipped_step_keeps_a_finite_inner_state():
  """Without reset, a non-finite gradient is skipped, momentum included."""
  tx = optax_exptest.exptest(0.1, inner=optax.trace(0.9), reset=False)
  params = jnp.zeros(3)
  state = tx.init(params)
  step = jax.jit(lambda g, s: tx.update(g, s, params, value=1.0))
  _, state = step(jnp.ones(3), state)
  updates, state = step(jnp.array([1.0, jnp.nan, 1.0]), state)
  assert int(state.decision) == Decision.SKIPPED
  assert np.all(np.asarray(updates) == 0)
  assert np.all(np.isfinite(np.asarray(state.inner_state.trace)))
  updates, state = step(jnp.ones(3), state)
  assert np.all(np.isfinite(np.asarray(updates))) and np.any(np.asarray(updates) != 0)


def test_divergence_factor_cuts_before_the_window_ends():
  loss, params = quadratic_problem()
  tx = optax_exptest.exptest(1e3, sgd_correction=False, divergence_factor=10.0)
  _, state, (values, decisions, _, _) = train(tx, loss, params, 20)
  decisions = np.asarray(decisions)
  first = int(np.argmax(decisions == Decision.DIVERGED))
  # Confirmed by the default patience of 3: two skipped steps before.
  assert 2 < first < 7
  np.testing.assert_array_equal(decisions[first - 2: first], Decision.SKIPPED)
  assert float(values[first]) > 10 * float(values[0])


@pytest.mark.parametrize(
    "inner", sweep([None, "trace", "adam"], default=["adam"]))
def test_reset_restores_parameters_and_matches_a_fresh_run(inner):
  """After a reset the run is a fresh run at the new rate (docs/design.md, resets)."""
  loss, params = quadratic_problem(seed=1)
  make_inner = {
      None: lambda: None,
      "trace": lambda: optax.trace(decay=0.9),
      "adam": lambda: optax.scale_by_adam(),
  }[inner]
  lr0 = 30.0 if inner != "adam" else 3.0
  tx = optax_exptest.exptest(lr0, inner=make_inner(), sgd_correction=False)
  _, state, (_, decisions, rates, trajectory) = train(tx, loss, params, 300)
  decisions = np.asarray(decisions)
  restarts = np.nonzero(
      (decisions == Decision.RESTART) | (decisions == Decision.DIVERGED)
  )[0]
  assert len(restarts) >= 1
  last = int(restarts[-1])
  after = jax.tree.map(lambda x: x[last], trajectory)
  scale = max(float(jnp.max(jnp.abs(x[last - 1]))) for x in jax.tree.leaves(trajectory))
  assert_trees_all_close(after, params, atol=4 * np.finfo(np.float32).eps * scale)

  # The fresh run is given the rate in gradient-descent units, as the first
  # was: the new rate times the inner's displacement ratio (inner_rules).
  new_rate = float(rates[last]) * float(state.scales.rho)
  fresh = optax_exptest.exptest(new_rate, inner=make_inner(), sgd_correction=False)
  horizon = 40
  _, _, (_, fresh_decisions, _, fresh_traj) = train(fresh, loss, after, horizon)
  resumed = jax.tree.map(lambda x: x[last + 1: last + 1 + horizon], trajectory)
  assert_trees_all_close(resumed, fresh_traj, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(
      decisions[last + 1: last + 1 + horizon], np.asarray(fresh_decisions)
  )


def test_memory_does_not_grow_with_the_window():
  loss, params = quadratic_problem()
  sizes = set()
  for lr in [1.0, 1e-4]:  # windows of a few steps and of ~10^4 steps
    tx = optax_exptest.exptest(lr, capacity=64)
    _, state, _ = train(tx, loss, params, 300)
    sizes.add(sum(x.nbytes for x in jax.tree.leaves(state)))
  assert len(sizes) == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(learning_rate=-1.0), "learning_rate"),
        (dict(learning_rate=0.1, alpha=0.0), "alpha"),
        (dict(learning_rate=0.1, alpha=1.0), "alpha"),
        (dict(learning_rate=0.1, beta=1.5), "beta"),
        (dict(learning_rate=0.1, beta=0.0), "beta"),
        (dict(learning_rate=0.1, capacity=3), "capacity"),
        (dict(learning_rate=0.1, divergence_factor=0.5), "divergence_factor"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    optax_exptest.exptest(**kwargs)


def test_update_without_value_raises():
  tx = optax_exptest.exptest(0.1)
  params = jnp.zeros(3)
  state = tx.init(params)
  with pytest.raises(TypeError, match="value"):
    tx.update(jnp.ones(3), state, params)
  with pytest.raises(ValueError, match="scalar"):
    tx.update(jnp.ones(3), state, params, value=jnp.ones(2))
  with pytest.raises(ValueError, match="params"):
    tx.update(jnp.ones(3), state, value=1.0)


def test_accepts_unknown_extra_args():
  tx = optax_exptest.exptest(0.1, inner=optax.trace(0.9))
  params = jnp.zeros(3)
  updates, _ = tx.update(
      jnp.ones(3), tx.init(params), params, value=1.0, some_other_arg=3
  )
  assert updates.shape == (3,)
