"""The policy seam: a policy is one module, and the paper's is one of them.

`NeverCut` below is the example of `docs/design.md` ("How to add a
policy"): a policy written outside the library, in this file only, that
tests windows of a fixed length with the paper's plateau test and never
changes the rate. The state machine (faults, divergences, the anchor, the
inner transformation) works with it unchanged.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optax_exptest
from optax_exptest import policies
from optax_exptest.policies import Decision, Phase

from problems import logistic_problem, quadratic_problem, train


@dataclasses.dataclass(frozen=True)
class NeverCut(policies.Policy):
  """Windows of `length` losses, each tested for a decrease; the rate is
  never changed. Its own memory counts the windows that did not decrease."""

  length: int = 20

  def init_state(self, dtype):
    return jnp.zeros((), jnp.int32)

  def first_window(self, window, scales, learning_rate, hp):
    del scales, learning_rate, hp  # One fixed length.
    n = jnp.asarray(self.length, jnp.int32)
    return policies.window.with_lengths(window, n * 0, n)

  def decide(self, event, state, hp, mode):
    del mode  # Never restarts: only a divergence returns to the anchor.
    p = jax.lax.cond(
        event.complete,
        lambda w, last: optax_exptest.stats.weighted_plateau_test(
            *policies.window.points(w)).astype(last.dtype),
        lambda w, last: last,
        event.window, event.p_value,
    )
    tested = event.complete
    decreasing = p < hp.alpha
    verdict = policies.Verdict(
        decision=jnp.where(
            event.diverged, Decision.DIVERGED,
            jnp.where(tested, jnp.where(decreasing, Decision.DECREASING,
                                        Decision.PLATEAU), Decision.NONE),
        ).astype(jnp.int32),
        phase=jnp.asarray(Phase.TUNING, jnp.int32),
        rate_factor=jnp.ones_like(hp.beta),
        restore=event.diverged,
        p_value=p.astype(event.p_value.dtype),
        next_length=jnp.where(tested, self.length, 0).astype(jnp.int32),
        measure_steps=jnp.zeros((), jnp.int32),
    )
    return verdict, state + (tested & ~decreasing).astype(jnp.int32)


def test_a_policy_written_outside_the_library_runs_end_to_end():
  loss, params, _ = logistic_problem()
  tx = optax_exptest.exptest(0.5, policy=NeverCut(length=20))
  _, state, (_, decisions, rates, _) = train(tx, loss, params, 200)
  decisions = np.asarray(decisions)
  # A test every 20 losses (the first loss fixes the scales and the window),
  # the rate never changes, the policy's memory counts the plateaus.
  tested = np.nonzero(decisions != Decision.NONE)[0]
  np.testing.assert_array_equal(tested, np.arange(19, 200, 20))
  np.testing.assert_array_equal(np.asarray(rates), np.float32(0.5))
  plateaus = int(np.sum(decisions == Decision.PLATEAU))
  assert int(state.policy_state) == plateaus
  assert int(state.num_cuts) == 0 and int(state.phase) == Phase.TUNING


def test_the_state_machine_still_skips_and_restores_under_another_policy():
  loss, params = quadratic_problem()
  tx = optax_exptest.exptest(0.1, policy=NeverCut())
  value_fn = lambda i, v: jnp.where((i == 30) | (i >= 60), jnp.nan, v)
  _, state, (_, decisions, _, trajectory) = train(
      tx, loss, params, 63, value_fn=value_fn)
  decisions = np.asarray(decisions)
  assert decisions[30] == Decision.SKIPPED
  np.testing.assert_array_equal(decisions[60:62], Decision.SKIPPED)
  assert decisions[62] == Decision.DIVERGED
  # The divergence returns to the anchor: with this policy in the tuning
  # phase from its first window, the last tested window's parameters.
  assert int(state.num_resets) == 1


def test_the_paper_policy_is_the_default_and_one_argument_away():
  # The same program (jaxpr) for a run of 300 steps: the same run, bit for
  # bit, without compiling and running six of them; a policy that changes
  # anything changes the program.
  loss, params, _ = logistic_problem()

  def program(tx):
    return str(jax.make_jaxpr(lambda p: train(tx, loss, p, 300))(params))

  default = program(optax_exptest.exptest(0.5))
  assert program(optax_exptest.exptest(0.5, policy=policies.PaperPolicy())) == default
  assert program(optax_exptest.exptest(0.5, policy="paper")) == default
  no_correction = program(optax_exptest.exptest(0.5, sgd_correction=False))
  assert no_correction != default
  assert program(optax_exptest.exptest(
      0.5, policy=policies.PaperPolicy(sgd_correction=False))) == no_correction
  assert program(optax_exptest.exptest(0.5, policy="probing")) != default


@pytest.mark.parametrize("bad, match", [
    (NeverCut, "call it"),
    ("papr", r"policy must be one of \['paper', 'probing'\]"),
    (0.5, "must be an optax_exptest Policy"),
])
def test_a_bad_policy_says_how_to_fix_it(bad, match):
  with pytest.raises(ValueError, match=match):
    optax_exptest.exptest(0.1, policy=bad)
