"""ExpTest's vocabulary of decisions: `Phase`, `Decision` and `Verdict`.

A policy (`policy.py`) turns the window's events into a `Verdict`; the
state machine (`exptest.py`) applies it. The paper's Algorithm 1, the
default policy, is `paper_policy.py`.
"""

import enum
from typing import Any, NamedTuple

import jax


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
  PROBE = 7  # Searching by probes: one scored; the next starts at another rate.
  BEST_PROBE = 8  # Searching ends: back to the best probe's rate; now tuning.


class Verdict(NamedTuple):
  """What a policy decided at an event (all scalars), whole: the state
  machine applies it as it is.

  Attributes:
    decision: the `Decision` (int32).
    phase: the new `Phase` (int32).
    rate_factor: the factor the rate is multiplied by (1: kept).
    restore: whether the parameters go back to the anchor and the inner
      transformation's state is re-initialised.
    p_value: the p-value of the test run at this event (the last one's if
      none ran).
    next_length: the next window's length, a fresh window (int32); 0 when
      the window goes on.
    measure_steps: the steps at the next window's start over which the
      mini-batch correction is measured (int32; 0 for none, and ignored
      when the window goes on).
    save: whether the parameters become the saved point (a policy with
      `saves_parameters` only).
    recall: whether the saved point becomes the anchor, to which `restore`
      then returns the parameters (a policy with `saves_parameters` only).
    score: the figure the decision compared, for the run's history (a
      probe's mean loss; NaN for none).

  Examples:
    >>> from optax_exptest.policies import Verdict
    >>> Verdict._fields
    ('decision', 'phase', 'rate_factor', 'restore', 'p_value', 'next_length', 'measure_steps', 'save', 'recall', 'score')
  """

  decision: jax.Array
  phase: jax.Array
  rate_factor: jax.Array
  restore: jax.Array
  p_value: jax.Array
  next_length: jax.Array
  measure_steps: Any = 0
  save: Any = False
  recall: Any = False
  score: Any = float("nan")
