"""The paper's policy's decision, as the truth table of its Algorithm 1."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optax_exptest._src.decision import Decision, Phase
from optax_exptest._src.paper_policy import algorithm1
from optax_exptest._src.policy import AnchorMode

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


@pytest.mark.parametrize("mode", list(AnchorMode), ids=lambda m: m.value)
@pytest.mark.parametrize("case", sorted(TABLE))
def test_truth_table(case, mode):
  phase, complete, significant, diverged = case
  decision, phase_after, cut = TABLE[case]
  alpha = 0.05
  p = 0.01 if significant else 0.5
  v = algorithm1(phase, complete, p, alpha, diverged, mode)
  assert int(v.decision) == decision
  assert bool(v.cut) == cut
  reset = mode is not AnchorMode.EVERY_WINDOW  # exptest(reset=False)
  if diverged:
    # Back to the anchor always; the phase stays, unless the anchor is the
    # initial parameters (a fresh search).
    assert bool(v.restore)
    assert int(v.phase) == (S if mode is AnchorMode.INIT else phase)
  else:
    assert int(v.phase) == phase_after
    assert bool(v.restore) == (reset and decision == Decision.RESTART)


@pytest.mark.parametrize(
    "reset, anchor, mode",
    [(True, "window", AnchorMode.TUNING_WINDOWS), (True, "init", AnchorMode.INIT),
     (False, "window", AnchorMode.EVERY_WINDOW), (False, "init", AnchorMode.EVERY_WINDOW)],
)
def test_anchor_mode_is_resolved_once_from_reset_and_anchor(reset, anchor, mode):
  assert AnchorMode.of(reset, anchor) is mode


def test_p_equal_to_alpha_is_not_significant():
  v = algorithm1(S, True, 0.05, 0.05, False)
  assert int(v.decision) == Decision.RESTART


def test_vmapped_decisions_match_the_scalar_ones():
  cases = sorted(TABLE)
  phase, complete, significant, diverged = (np.array(c) for c in zip(*cases))
  p = np.where(significant, 0.01, 0.5).astype(np.float32)
  batched = jax.jit(jax.vmap(
      lambda *a: algorithm1(*a), in_axes=(0, 0, 0, None, 0)
  ))(jnp.asarray(phase, jnp.int32), complete, p, 0.05, diverged)
  for i, case in enumerate(cases):
    single = algorithm1(case[0], case[1], float(p[i]), 0.05, case[3])
    for a, b in zip(batched, single):
      assert int(a[i]) == int(b)
