"""The decision step, as the truth table of the paper's Algorithm 1."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optax_exptest._src.decision import Decision, Phase, decide

S, T = Phase.SEARCHING, Phase.TUNING

# (phase, complete, significant, diverged) -> (decision, phase after, cut),
# written from the paper's Algorithm 1 and docs/design.md section 3; `reset`
# changes only where the parameters go (below).
TABLE = {
    (S, False, False, False): (Decision.NONE, S, False),
    (S, False, True, False): (Decision.NONE, S, False),
    (S, True, True, False): (Decision.EXPONENTIAL, T, False),
    (S, True, False, False): (Decision.RESTART, S, True),
    (T, False, False, False): (Decision.NONE, T, False),
    (T, False, True, False): (Decision.NONE, T, False),
    (T, True, True, False): (Decision.DECREASING, T, False),
    (T, True, False, False): (Decision.PLATEAU, T, True),
}
for phase, complete, significant in itertools.product((S, T), (False, True), (False, True)):
  # A divergence is a failed test whatever the window says.
  TABLE[(phase, complete, significant, True)] = (Decision.DIVERGED, None, True)


@pytest.mark.parametrize("restart_on_divergence", [False, True])
@pytest.mark.parametrize("reset", [True, False])
@pytest.mark.parametrize("case", sorted(TABLE))
def test_truth_table(case, reset, restart_on_divergence):
  phase, complete, significant, diverged = case
  decision, phase_after, cut = TABLE[case]
  alpha = 0.05
  p = 0.01 if significant else 0.5
  v = decide(phase, complete, p, alpha, diverged, reset,
             restart_on_divergence=restart_on_divergence)
  assert int(v.decision) == decision
  assert bool(v.cut) == cut
  if diverged:
    # Back to the anchor always; the phase stays, unless the anchor is the
    # initial parameters (a fresh search).
    assert bool(v.restore)
    assert int(v.phase) == (S if restart_on_divergence else phase)
  else:
    assert int(v.phase) == phase_after
    assert bool(v.restore) == (reset and decision == Decision.RESTART)


def test_p_equal_to_alpha_is_not_significant():
  v = decide(S, True, 0.05, 0.05, False, reset=True)
  assert int(v.decision) == Decision.RESTART


def test_vmapped_decisions_match_the_scalar_ones():
  cases = sorted(TABLE)
  phase, complete, significant, diverged = (np.array(c) for c in zip(*cases))
  p = np.where(significant, 0.01, 0.5).astype(np.float32)
  batched = jax.jit(jax.vmap(
      lambda *a: decide(*a, reset=True), in_axes=(0, 0, 0, None, 0)
  ))(jnp.asarray(phase, jnp.int32), complete, p, 0.05, diverged)
  for i, case in enumerate(cases):
    single = decide(case[0], case[1], float(p[i]), 0.05, case[3], reset=True)
    for a, b in zip(batched, single):
      assert int(a[i]) == int(b)
