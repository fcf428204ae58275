"""Transient faults are skipped; persistent ones are divergences.

A fault (a non-finite loss, gradient or inner update, or a loss far above
L0) that does not persist must cost one step and nothing else: the run with
the faulty steps equals the clean run with those steps left out. Faults in
a row are a divergence: the rate is cut and the parameters return to the
anchor (the initial parameters while searching, the last completed window's
once tuning).
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_exptest
from optax_exptest import Decision, Phase

from helpers import assert_trees_all_close, sweep
from problems import quadratic_problem, train

CLEAN, NAN_LOSS, NAN_GRAD, INF_GRAD, HUGE_LOSS = range(5)
FAULTS = (NAN_LOSS, NAN_GRAD, INF_GRAD, HUGE_LOSS)
BATCH = 32

INNERS = {
    None: lambda: None,
    "trace": lambda: optax.trace(0.9),
    "adam": lambda: optax.scale_by_adam(),
}


def minibatch_problem(n=512, dim=20, classes=4, seed=0):
  """Softmax regression on mini-batches: `loss(params, batch_index)`."""
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(n, dim)), jnp.float32)
  y = jnp.asarray(rng.integers(0, classes, size=n))

  def loss(params, b):
    xb = jax.lax.dynamic_slice_in_dim(x, b * BATCH, BATCH)
    yb = jax.lax.dynamic_slice_in_dim(y, b * BATCH, BATCH)
    logits = xb @ params["w"] + params["b"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

  params = {"w": jnp.zeros((dim, classes)), "b": jnp.zeros(classes)}
  return loss, params, np.asarray(x), n // BATCH


def corrupt(kind, value, grads):
  """The step's loss and gradient as a fault of `kind` makes them."""
  value = jnp.where(kind == NAN_LOSS, jnp.nan, value)
  value = jnp.where(kind == HUGE_LOSS, 1e6 * value, value)
  bad = jnp.where(kind == NAN_GRAD, jnp.nan, jnp.inf)
  grads = jax.tree.map(
      lambda g: jnp.where(
          (kind == NAN_GRAD) | (kind == INF_GRAD), g.at[(0,) * g.ndim].set(bad), g
      ),
      grads,
  )
  return value, grads


def run(tx, loss, params, batches, kinds, state=None):
  """Trains on `batches` in a scan, corrupting step `t` as `kinds[t]` says,
  from `state` (`tx.init(params)` when None)."""

  def step(carry, inputs):
    params, state = carry
    b, kind = inputs
    value, grads = jax.value_and_grad(loss)(params, b)
    value, grads = corrupt(kind, value, grads)
    updates, state = tx.update(grads, state, params, value=value)
    params = optax.apply_updates(params, updates)
    return (params, state), (params, state.learning_rate, state.decision)

  state = tx.init(params) if state is None else state
  (params, state), records = jax.lax.scan(
      step, (params, state), (batches, kinds)
  )
  return params, state, records


def insert_faults(batches, rng, count):
  """The batches with `count` faults inserted at random places, one pair of
  them in a row, never three (the default patience), and the mask of clean
  steps."""
  out_batches, out_kinds = list(batches), [CLEAN] * len(batches)
  for i in range(count):
    while True:
      at = int(rng.integers(0, len(out_kinds) + 1))
      if not any(k != CLEAN for k in out_kinds[max(0, at - 2): at + 2]):
        break
    for _ in range(2 if i == 0 else 1):
      out_kinds.insert(at, int(rng.choice(FAULTS)))
      out_batches.insert(at, int(rng.integers(0, 16)))
  kinds = np.asarray(out_kinds, np.int32)
  return np.asarray(out_batches, np.int32), kinds, kinds == CLEAN


def _state_without_counters(state):
  # The history stamps each event with the update's count, which counts
  # the skipped updates too.
  return state._replace(
      step=None, num_skipped=None, decision=None, faults_in_a_row=None,
      history=state.history._replace(steps=None),
  )


def _clean_batches(num_batches, steps, seed):
  return np.random.default_rng(seed).integers(0, num_batches, size=steps)


@pytest.mark.parametrize("inner", sweep(sorted(INNERS, key=str), default=["adam"]))
def test_faulty_run_equals_the_clean_run_without_the_faulty_steps(inner):
  loss, params, x, num_batches = minibatch_problem()
  tx = optax_exptest.exptest(
      optax_exptest.lr_upper_bound(x), inner=INNERS[inner]()
  )
  steps = 300
  batches = _clean_batches(num_batches, steps, seed=1)
  rng = np.random.default_rng(2)
  faulty_batches, kinds, clean = insert_faults(batches, rng, count=24)
  assert set(FAULTS) <= set(kinds.tolist())
  faulty = kinds != CLEAN
  assert np.any(faulty[1:] & faulty[:-1])  # Two faults in a row occur.
  runner = jax.jit(lambda b, k: run(tx, loss, params, b, k))

  final, state, (traj, rates, decisions) = runner(
      jnp.asarray(batches), jnp.zeros(steps, jnp.int32)
  )
  f_final, f_state, (f_traj, f_rates, f_decisions) = runner(
      jnp.asarray(faulty_batches), jnp.asarray(kinds)
  )
  # The clean run decides something, or the property would say little.
  assert np.sum(np.asarray(decisions) != Decision.NONE) >= 2

  f_decisions = np.asarray(f_decisions)
  np.testing.assert_array_equal(f_decisions[~clean], Decision.SKIPPED)
  np.testing.assert_array_equal(f_decisions[clean], np.asarray(decisions))
  np.testing.assert_array_equal(np.asarray(f_rates)[clean], np.asarray(rates))
  assert_trees_all_close(
      jax.tree.map(lambda t: t[clean], f_traj), traj, rtol=1e-6, atol=1e-7
  )
  assert_trees_all_close(final, f_final, rtol=1e-6, atol=1e-7)
  assert_trees_all_close(
      _state_without_counters(f_state), _state_without_counters(state),
      rtol=1e-6, atol=1e-7,
  )
  assert int(f_state.num_skipped) == int(np.sum(~clean))
  assert int(f_state.num_cuts) == int(state.num_cuts)
  assert all(np.all(np.isfinite(np.asarray(p))) for p in jax.tree.leaves(f_final))


@pytest.mark.slow  # The same property, per arm: a vmapped program of 4 runs.
def test_faults_under_vmap_act_per_arm():
  """Each vmapped arm has its own faults; each equals its own clean run."""
  loss, params, x, num_batches = minibatch_problem()
  tx = optax_exptest.exptest(
      optax_exptest.lr_upper_bound(x), inner=optax.scale_by_adam()
  )
  steps = 200
  batches = _clean_batches(num_batches, steps, seed=3)
  arms = [insert_faults(batches, np.random.default_rng(s), count=12)
          for s in (4, 5)]
  # Same length for both arms: pad the shorter one with clean steps.
  length = max(len(a[0]) for a in arms)
  pad = lambda a, v: np.concatenate([a, np.full(length - len(a), v, a.dtype)])
  runner = lambda b, k: run(tx, loss, params, b, k)
  f_final, f_state, (_, _, f_decisions) = jax.jit(jax.vmap(runner))(
      jnp.stack([pad(a[0], 0) for a in arms]),
      jnp.stack([pad(a[1], CLEAN) for a in arms]),
  )
  for arm, (_, kinds, clean) in enumerate(arms):
    tail = np.asarray([0] * (length - len(kinds)), np.int32)
    final, state, (_, _, decisions) = jax.jit(runner)(
        jnp.asarray(np.concatenate([batches, tail])),
        jnp.zeros(steps + len(tail), jnp.int32),
    )
    got = np.asarray(f_decisions[arm])[: len(kinds)]
    np.testing.assert_array_equal(got[~clean], Decision.SKIPPED)
    np.testing.assert_array_equal(got[clean], np.asarray(decisions)[:steps])
    assert_trees_all_close(
        jax.tree.map(lambda t: t[arm], f_final), final, rtol=1e-6, atol=1e-7
    )
    assert int(f_state.num_skipped[arm]) == int(np.sum(~clean))


def _tuning_run(anchor):
  """A full-batch run that reaches tuning, then three NaN losses in a row."""
  loss, params = quadratic_problem()
  tx = optax_exptest.exptest(0.5, sgd_correction=False, anchor=anchor)
  _, _, (_, decisions, rates, traj) = train(tx, loss, params, 400)
  decisions = np.asarray(decisions)
  tested = np.flatnonzero(
      (decisions == Decision.EXPONENTIAL) | (decisions == Decision.DECREASING)
      | (decisions == Decision.PLATEAU)
  )
  assert decisions[tested[0]] == Decision.EXPONENTIAL
  blow_up = int(tested[-1]) + 5
  bad = lambda i, v: jnp.where((i >= blow_up) & (i < blow_up + 3), jnp.nan, v)
  _, state, records = train(tx, loss, params, blow_up + 3, value_fn=bad)
  return params, tested, blow_up, traj, rates, records, state


def test_a_divergence_in_tuning_returns_to_the_last_completed_window():
  params, tested, blow_up, traj, rates, records, state = _tuning_run("window")
  _, decisions, f_rates, f_traj = records
  decisions = np.asarray(decisions)
  np.testing.assert_array_equal(
      decisions[blow_up: blow_up + 3],
      [Decision.SKIPPED, Decision.SKIPPED, Decision.DIVERGED],
  )
  # The parameters whose loss completed the last window: the input of
  # that window's last update, the output of the update before it.
  last = int(tested[-1])
  restored = jax.tree.map(lambda t: t[blow_up + 2], f_traj)
  assert_trees_all_close(
      restored, jax.tree.map(lambda t: t[last - 1], traj), atol=1e-6
  )
  assert not np.allclose(np.asarray(restored["w"]), np.asarray(params["w"]))
  assert int(state.phase) == Phase.TUNING
  assert float(f_rates[blow_up + 2]) == pytest.approx(
      0.33 * float(rates[blow_up - 1]), rel=1e-6
  )


@pytest.mark.slow  # The other anchor; the default one's return is fast.
def test_anchor_init_returns_to_the_start_and_searches_again():
  params, _, blow_up, _, _, records, state = _tuning_run("init")
  _, decisions, _, f_traj = records
  assert int(np.asarray(decisions)[blow_up + 2]) == Decision.DIVERGED
  assert_trees_all_close(
      jax.tree.map(lambda t: t[blow_up + 2], f_traj), params, atol=1e-7
  )
  assert int(state.phase) == Phase.SEARCHING


@pytest.mark.parametrize("patience", sweep([1, 2, 5], default=[2]))
def test_patience_faults_in_a_row_confirm_a_divergence(patience):
  loss, params = quadratic_problem()
  tx = optax_exptest.exptest(
      0.1, sgd_correction=False, divergence_patience=patience
  )
  bad = lambda i, v: jnp.where(i >= 10, jnp.nan, v)
  _, state, (_, decisions, _, _) = train(tx, loss, params, 10 + 2 * patience, bad)
  decisions = np.asarray(decisions)[10:]
  expected = ([Decision.SKIPPED] * (patience - 1) + [Decision.DIVERGED]) * 2
  np.testing.assert_array_equal(decisions, expected)
  assert int(state.num_cuts) == 2


@pytest.mark.parametrize("bad", [0, 1.5, "3", None])
def test_patience_must_be_a_positive_int(bad):
  with pytest.raises(ValueError, match="divergence_patience"):
    optax_exptest.exptest(0.1, divergence_patience=bad)


def test_anchor_must_be_window_or_init():
  with pytest.raises(ValueError, match="anchor must be 'window' or 'init'"):
    optax_exptest.exptest(0.1, anchor="start")


@pytest.mark.slow  # Orbax's resume is also test_flax.py's (fast tier).
def test_checkpoint_and_resume_mid_window_with_orbax(tmp_path):
  ocp = pytest.importorskip("orbax.checkpoint")
  loss, params, x, num_batches = minibatch_problem()
  tx = optax_exptest.exptest(
      optax_exptest.lr_upper_bound(x), inner=optax.scale_by_adam()
  )
  batches = jnp.asarray(_clean_batches(num_batches, 240, seed=6))
  kinds = jnp.asarray(
      np.where(np.arange(240) % 37 == 5, NAN_GRAD, CLEAN).astype(np.int32)
  )
  runner = jax.jit(lambda p, s, b, k: run(tx, loss, p, b, k, state=s))
  state0 = tx.init(params)
  whole = runner(params, state0, batches, kinds)

  split = 131
  half_params, half_state, _ = runner(
      params, state0, batches[:split], kinds[:split]
  )
  window = half_state.window
  assert 0 < int(window.losses.count) < int(window.length)  # Mid-window.
  path = tmp_path / "ckpt"
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(path, {"params": half_params, "opt_state": half_state})
  with ocp.StandardCheckpointer() as ckpt:
    target = jax.tree.map(
        ocp.utils.to_shape_dtype_struct,
        {"params": params, "opt_state": state0},
    )
    restored = ckpt.restore(path, target)
  assert type(restored["opt_state"]) is type(state0)
  resumed = runner(
      restored["params"], restored["opt_state"], batches[split:], kinds[split:]
  )
  # The final parameters and state, and the decisions after the split.
  assert_trees_all_close(resumed[:2], whole[:2], rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(resumed[2][2], whole[2][2][split:])

