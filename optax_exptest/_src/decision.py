"""ExpTest's decision step: the paper's Algorithm 1 on scalars.

At the end of a window (or at a confirmed divergence) ExpTest turns a few scalars into
a verdict: what was decided, the new phase, whether the rate is cut, and
whether the parameters go back to the anchor. `decide` is that function,
pure and elementwise, so it reads like the paper and is tested as a truth
table (`tests/test_decision.py`).

=========  ========  ===========  =========  =====================  =========
phase      complete  p < alpha    diverged   decision               cut
=========  ========  ===========  =========  =====================  =========
any        any       any          yes        DIVERGED               yes
searching  yes       yes          no         EXPONENTIAL (tuning)   no
searching  yes       no           no         RESTART                yes
tuning     yes       yes          no         DECREASING             no
tuning     yes       no           no         PLATEAU                yes
any        no        any          no         NONE                   no
=========  ========  ===========  =========  =====================  =========

The parameters go back to the anchor on DIVERGED (whatever `reset`: a run
must not go on from parameters that blew up) and, with `reset=True`, on
RESTART (the paper's restart). The phase stays what it was, except after a
passed search test, and after a divergence with `restart_on_divergence`
(the anchor is then the initial parameters: the search starts again).

A fault that a divergence has not confirmed (`exptest`'s
`divergence_patience`) never reaches this function: the update records it
as SKIPPED, with no cut and a zero update.
"""

import enum
from typing import NamedTuple

import jax
import jax.numpy as jnp


class Phase(enum.IntEnum):
  """The values of `ExpTestState.phase`.

  Examples:
    >>> import jax.numpy as jnp, optax_exptest
    >>> state = optax_exptest.exptest(0.1).init(jnp.zeros(3))
    >>> optax_exptest.Phase(int(state.phase)).name
    'SEARCHING'
  """

  SEARCHING = 0
  TUNING = 1


class Decision(enum.IntEnum):
  """What an update decided, the values of `ExpTestState.decision`.

  Examples:
    >>> import jax.numpy as jnp, optax_exptest
    >>> tx = optax_exptest.exptest(0.1)
    >>> params = jnp.zeros(3)
    >>> _, state = tx.update(jnp.ones(3), tx.init(params), params,
    ...                      value=jnp.nan)
    >>> optax_exptest.Decision(int(state.decision)).name
    'SKIPPED'
  """

  NONE = 0  # No test ended at this step.
  EXPONENTIAL = 1  # Searching: exponential decay detected; now tuning.
  RESTART = 2  # Searching: no exponential decay; rate cut (and reset).
  DECREASING = 3  # Tuning: the loss still decreases; rate kept.
  PLATEAU = 4  # Tuning: plateau; rate cut.
  DIVERGED = 5  # Faults in a row (non-finite values, a loss far above L0).
  SKIPPED = 6  # A fault not (yet) confirmed: a zero update, nothing cut.


class Verdict(NamedTuple):
  """The outcome of `decide` (all scalars).

  Attributes:
    decision: the `Decision` (int32).
    phase: the new `Phase` (int32).
    cut: whether the rate is cut (and a new window and correction start).
    restore: whether the parameters go back to the anchor and the inner
      transformation's state is re-initialised.
  """

  decision: jax.Array
  phase: jax.Array
  cut: jax.Array
  restore: jax.Array


def decide(
    phase: jax.typing.ArrayLike,
    complete: jax.typing.ArrayLike,
    p_value: jax.typing.ArrayLike,
    alpha: jax.typing.ArrayLike,
    diverged: jax.typing.ArrayLike,
    reset: bool,
    restart_on_divergence: bool = False,
) -> Verdict:
  """Algorithm 1's decision on one step (see the module's table).

  Args:
    phase: the current `Phase`.
    complete: whether the window holds its full length (a test ran).
    p_value: the p-value of that test (ignored when not `complete`).
    alpha: the significance level.
    diverged: whether a divergence is confirmed at this step.
    reset: the `reset` option of `exptest` (a Python bool).
    restart_on_divergence: whether a divergence returns the phase to
      searching (a Python bool: `reset=True` with `anchor="init"`).

  Returns:
    A `Verdict`.

  Examples:
    >>> from optax_exptest._src.decision import decide, Decision, Phase
    >>> v = decide(Phase.SEARCHING, True, 0.5, 0.05, False, reset=True)
    >>> Decision(int(v.decision)).name, bool(v.cut), bool(v.restore)
    ('RESTART', True, True)
  """
  phase = jnp.asarray(phase, jnp.int32)
  diverged = jnp.asarray(diverged, bool)
  tested = jnp.asarray(complete, bool) & ~diverged
  passed = tested & (p_value < alpha)
  failed = tested & ~passed
  searching = phase == Phase.SEARCHING
  decision = jnp.where(
      diverged,
      Decision.DIVERGED,
      jnp.where(
          tested,
          jnp.where(
              searching,
              jnp.where(passed, Decision.EXPONENTIAL, Decision.RESTART),
              jnp.where(passed, Decision.DECREASING, Decision.PLATEAU),
          ),
          Decision.NONE,
      ),
  ).astype(jnp.int32)
  restart = reset & failed & searching
  new_phase = jnp.where(
      passed & searching, Phase.TUNING,
      jnp.where(restart_on_divergence & diverged, Phase.SEARCHING, phase),
  ).astype(jnp.int32)
  return Verdict(
      decision=decision,
      phase=new_phase,
      cut=diverged | failed,
      restore=diverged | restart,
  )
