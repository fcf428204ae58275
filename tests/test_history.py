"""The run's history in the state: its last changes, as a per-step record
would show them.

A run recorded step by step (the state's `decision` and `learning_rate`
after each update) is the reference: the history must hold exactly its
changes (cuts, returns to the anchor, the switch to tuning), with their
steps, rates and p-values, and nothing for the steps that changed nothing.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_exptest
from optax_exptest import Decision
from optax_exptest._src.history import HISTORY_LENGTH

from problems import quadratic_problem

# Decisions that change nothing: not in the history.
UNRECORDED = {Decision.NONE, Decision.DECREASING, Decision.SKIPPED}


def recorded_run(tx, loss, params, steps, faulty_steps=()):
  """Runs `steps` updates in a scan; NaN losses at `faulty_steps` (from 1).

  Returns:
    The final state and, per step, the decision, the rate and the p-value
    after it.
  """
  faulty = np.zeros(steps, bool)
  faulty[np.asarray(faulty_steps, int) - 1] = True

  def step(carry, bad):
    params, state = carry
    value, grads = jax.value_and_grad(loss)(params)
    value = jnp.where(bad, jnp.nan, value)
    updates, state = tx.update(grads, state, params, value=value)
    # optax.tree.get finds the fields in a bare state and inside a chain
    # (the history's own names do not shadow them).
    record = tuple(optax.tree.get(state, k) for k in ("decision", "learning_rate", "p_value"))
    return (optax.apply_updates(params, updates), state), record

  (_, state), records = jax.lax.scan(step, (params, tx.init(params)), faulty)
  return state, records


def expected_events(start_rate, decisions, rates, p_values):
  """The changes a per-step record shows, as the history lists them."""
  events, before = [], start_rate
  for i, (d, rate, p) in enumerate(zip(decisions, rates, p_values)):
    if Decision(int(d)) not in UNRECORDED:
      events.append(dict(step=i + 1, decision=int(d), rate_before=before,
                         learning_rate=float(rate), p_value=float(p)))
    before = float(rate)
  return events


def assert_same_events(history, expected):
  assert [(e["step"], e["decision"]) for e in history] == [
      (e["step"], e["decision"]) for e in expected]
  for got, want in zip(history, expected):
    assert got["decision_name"] == Decision(want["decision"]).name.lower()
    for key in ("rate_before", "learning_rate", "p_value"):
      assert got[key] == pytest.approx(want[key], rel=1e-6), (got, key)


def test_history_holds_the_changes_a_per_step_record_shows():
  loss, params = quadratic_problem()
  # A start 30x too high: restarts, the switch to tuning, plateau cuts; two
  # NaN losses in a row are skipped, three confirm a divergence.
  tx = optax_exptest.exptest(30.0, sgd_correction=False)
  faults = (150, 151, 300, 301, 302)
  state, (decisions, rates, p_values) = jax.jit(
      lambda p: recorded_run(tx, loss, p, 600, faults))(params)
  seen = {Decision(int(d)) for d in decisions}
  assert {Decision.RESTART, Decision.EXPONENTIAL, Decision.DECREASING,
          Decision.SKIPPED, Decision.DIVERGED} <= seen, seen
  expected = expected_events(30.0, decisions, rates, p_values)
  assert len(expected) <= HISTORY_LENGTH
  history = optax_exptest.exptest_summary(state)["history"]
  assert_same_events(history, expected)
  # A decision applies to its own update: the rate after an event is the
  # rate of the steps up to the next, which is that event's rate before.
  for a, b in zip(history, history[1:]):
    assert b["rate_before"] == a["learning_rate"]


def test_history_keeps_the_last_events_oldest_first():
  loss, params = quadratic_problem()
  tx = optax_exptest.exptest(0.1, sgd_correction=False)
  steps = 3 * (HISTORY_LENGTH + 5)
  # Every loss NaN: a divergence every 3 steps (the default patience).
  state, (decisions, rates, p_values) = jax.jit(lambda p: recorded_run(
      tx, loss, p, steps, faulty_steps=range(1, steps + 1)))(params)
  expected = expected_events(0.1, decisions, rates, p_values)
  assert len(expected) == HISTORY_LENGTH + 5
  history = optax_exptest.exptest_summary(state)["history"]
  assert_same_events(history, expected[-HISTORY_LENGTH:])
  assert [e["step"] for e in history] == list(range(18, steps + 1, 3))
  assert int(state.history.num_events) == HISTORY_LENGTH + 5


def test_vmapped_history_is_one_list_per_arm_each_its_own_record():
  loss, params = quadratic_problem()

  def run(rate):
    tx = optax_exptest.exptest(rate, sgd_correction=False)
    return recorded_run(tx, loss, params, 300)

  rates = [30.0, 3.0, 0.3]
  state, records = jax.jit(jax.vmap(run))(jnp.asarray(rates))
  batched = optax_exptest.exptest_summary(state)
  assert len(batched["history"]) == len(rates)
  for i, (rate, history) in enumerate(zip(rates, batched["history"])):
    assert_same_events(history, expected_events(rate, *(np.asarray(r[i]) for r in records)))
  assert batched["history"][0] != batched["history"][2]


def test_history_survives_a_state_dict_and_a_chain():
  serialization = pytest.importorskip("flax.serialization")
  loss, params = quadratic_problem()
  tx = optax.chain(optax.clip(10.0), optax_exptest.exptest(30.0, sgd_correction=False))
  state, _ = jax.jit(lambda p: recorded_run(tx, loss, p, 100))(params)
  history = optax_exptest.exptest_summary(state)["history"]
  assert history, "the start 30x too high is cut at least once"
  as_dict = serialization.to_state_dict(state)
  assert optax_exptest.exptest_summary(as_dict)["history"] == history
