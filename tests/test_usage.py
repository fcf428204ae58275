"""Mistakes in how ExpTest is used, each named when it happens.

Each of these passed silently, or with a message that hid the cause, before
`_src/usage.py` and the rate's fault rule.
"""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_exptest
from optax_exptest import Decision

from helpers import assert_trees_all_close
from problems import quadratic_problem, train

CHAINED = "per-parameter state .* runs before ExpTest .* inner="


def _init_warnings(tx, params):
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    tx.init(params)
  return [str(w.message) for w in caught if "exptest" in str(w.message)]


# ----------------------------------------------------------------------------
# A stateful transformation chained before ExpTest: a warning at init.


@pytest.mark.parametrize("before, state_name", [
    (optax.scale_by_adam, "ScaleByAdamState"),
    (lambda: optax.trace(0.9), "TraceState"),
    (lambda: optax.chain(optax.clip(1.0), optax.scale_by_rms()), "ScaleByRmsState"),
])
def test_a_stateful_transformation_chained_before_warns_at_init(before, state_name):
  _, params = quadratic_problem()
  tx = optax.chain(before(), optax_exptest.exptest(0.1))
  with pytest.warns(UserWarning, match=CHAINED) as caught:
    tx.init(params)
  assert state_name in str(caught[0].message)
  # Under jit (init traced) and inside a named chain or a nested chain too.
  with pytest.warns(UserWarning, match=CHAINED):
    jax.jit(tx.init)(params)
  named = optax.named_chain(("adam", before()), ("exptest", optax_exptest.exptest(0.1)))
  with pytest.warns(UserWarning, match=CHAINED):
    named.init(params)
  nested = optax.chain(before(), optax.chain(optax.clip(1.0), optax_exptest.exptest(0.1)))
  with pytest.warns(UserWarning, match=CHAINED):
    nested.init(params)


@pytest.mark.parametrize("tx", [
    optax_exptest.exptest(0.1, inner=optax.scale_by_adam()),
    optax.chain(optax.clip_by_global_norm(1.0), optax.add_decayed_weights(1e-4),
                optax_exptest.exptest(0.1)),
    # After ExpTest, a state is none of its business.
    optax.chain(optax_exptest.exptest(0.1), optax.trace(0.9)),
], ids=["inner", "stateless-before", "after"])
def test_no_warning_without_a_stateful_transformation_before(tx):
  _, params = quadratic_problem()
  assert _init_warnings(tx, params) == []


def test_two_exptests_in_a_chain_are_told_once():
  # The check traces the elements before ExpTest, here another ExpTest,
  # whose own check must not look at the chain again.
  _, params = quadratic_problem()
  tx = optax.chain(optax_exptest.exptest(0.1), optax_exptest.exptest(0.2))
  messages = _init_warnings(tx, params)
  assert len(messages) == 1 and "(ExpTestState)" in messages[0]


def test_the_chain_check_costs_nothing_after_init():
  loss, params = quadratic_problem()
  tx = optax.chain(optax.scale_by_adam(), optax_exptest.exptest(0.1))
  with pytest.warns(UserWarning, match=CHAINED):
    state = tx.init(params)
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # update never looks again
    value, grads = jax.value_and_grad(loss)(params)
    jax.jit(tx.update)(grads, state, params, value=value)


# ----------------------------------------------------------------------------
# The loss under another keyword, or not forwarded.


@pytest.mark.parametrize("keyword", ["loss", "loss_value"])
def test_the_loss_under_another_keyword_is_named(keyword):
  tx = optax_exptest.exptest(0.1)
  params = jnp.zeros(3)
  with pytest.raises(TypeError, match=rf"got {keyword}= instead.*value=loss"):
    tx.update(jnp.ones(3), tx.init(params), params, **{keyword: 1.0})


def test_extra_keywords_beside_value_pass_through():
  # A chain hands every extra argument to every member: ExpTest must accept
  # the others' when it has its own.
  tx = optax_exptest.exptest(0.1, inner=optax.trace(0.9))
  params = jnp.zeros(3)
  updates, _ = tx.update(jnp.ones(3), tx.init(params), params, value=1.0, loss=2.0)
  assert updates.shape == (3,)


# ----------------------------------------------------------------------------
# A rate injected after init.


def _injected_run(set_rate_at, new_rate, jit):
  loss, params = quadratic_problem()
  tx = optax.inject_hyperparams(optax_exptest.exptest)(
      learning_rate=0.3, sgd_correction=False)
  update = jax.jit(tx.update) if jit else tx.update
  state = tx.init(params)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for i in range(6):
      if i == set_rate_at:
        state.hyperparams["learning_rate"] = jnp.asarray(new_rate)
      value, grads = jax.value_and_grad(loss)(params)
      updates, state = update(grads, state, params, value=value)
      jax.block_until_ready(updates)
      params = optax.apply_updates(params, updates)
  messages = [str(w.message) for w in caught if "injected learning_rate" in str(w.message)]
  return params, state, messages


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
def test_a_rate_injected_after_init_is_named_once_and_changes_nothing(jit):
  untouched, _, none = _injected_run(None, None, jit)
  assert none == []
  params, state, messages = _injected_run(2, 0.01, jit)
  assert len(messages) == 1, messages  # once per change, not per step
  assert "from 0.3 to 0.01 after init" in messages[0]
  assert "exptest_summary" in messages[0]
  # It changes nothing: init read the rate.
  assert_trees_all_close(params, untouched)
  assert optax_exptest.exptest_summary(state)["learning_rate"] == pytest.approx(0.3)


def test_without_inject_hyperparams_update_has_no_callback():
  # The injected rate's check is compiled only where a rate can be injected.
  loss, params = quadratic_problem()
  plain = optax_exptest.exptest(0.3)
  injected = optax.inject_hyperparams(optax_exptest.exptest)(learning_rate=0.3)

  def jaxpr(tx):
    value, grads = jax.value_and_grad(loss)(params)
    return str(jax.make_jaxpr(tx.update)(grads, tx.init(params), params, value=value))

  assert "callback" not in jaxpr(plain)
  assert "callback" in jaxpr(injected)


# ----------------------------------------------------------------------------
# A traced rate that is not positive: every step a fault, never ascent.


def test_a_traced_non_positive_rate_never_climbs_the_loss():
  loss, params = quadratic_problem()

  def run(rate):
    return train(optax_exptest.exptest(rate, sgd_correction=False), loss, params, 40)

  rates = jnp.asarray([0.3, -0.3, 0.0, jnp.nan, jnp.inf])
  final, state, (values, decisions, _, _) = jax.jit(jax.vmap(run))(rates)
  alone = jax.jit(run)(0.3)
  assert_trees_all_close(jax.tree.map(lambda x: x[0], final), alone[0], rtol=1e-5, atol=1e-6)
  for arm in range(1, len(rates)):
    # The parameters never move and the loss never climbs ...
    assert_trees_all_close(jax.tree.map(lambda x, a=arm: x[a], final), params)
    np.testing.assert_array_equal(values[arm], values[arm, 0])
    # ... and the run says why: a divergence every 3 steps (the patience).
    diverged = np.flatnonzero(np.asarray(decisions[arm]) == Decision.DIVERGED) + 1
    np.testing.assert_array_equal(diverged, np.arange(3, 41, 3))
  summary = optax_exptest.exptest_summary(state)
  assert summary["history"][1][-1]["decision_name"] == "diverged"
  assert summary["history"][1][-1]["rate_before"] < 0
