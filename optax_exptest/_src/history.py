"""The run's record: its last changes, kept in the state at no cost per step.

A bounded ring of the last `HISTORY_LENGTH` events that changed the run (a
cut, a return to the anchor, a change of phase), each with its step, its
`Decision`, the rate before and after it and the p-value of the test behind
it. Written in the rare decision branch only (`exptest._decide_step`), so a
common step carries it and never touches it; read on the host by
`exptest_summary` (`events`) and drawn by `plotting.plot_run`.

What is not recorded, and why: an update that decides nothing
(`Decision.NONE`); a skipped fault (`Decision.SKIPPED`, counted by
`num_skipped`: the decision branch does not run, and a stream of bad
batches would push the run's changes out of the ring); and a passed test
that keeps everything (`Decision.DECREASING`: a long tuning phase ends a
window every few hundred steps and would do the same; the last test's
p-value is the state's `p_value`).
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_exptest._src.decision import Decision
from optax_exptest._src.decision import Verdict

#: The events kept: a run's changes (a few restarts, the switch to tuning, a
#: plateau cut per decade of rate) fit; beyond, the oldest are dropped.
HISTORY_LENGTH = 16


class History(NamedTuple):
  """The last `HISTORY_LENGTH` changes of a run, a ring (arrays only).

  Its names are its own (not `step`, `learning_rate`, ...), so that
  `optax.tree.get(state, "learning_rate")` still finds one value.

  Attributes:
    steps: the update that decided, counted from 1 as `ExpTestState.step`
      after it (int32, one per slot; 0 in a slot never written).
    decisions: the `Decision` (int32, one per slot).
    rates_before: the rate before the event: the rate of the steps since
      the one before it (one per slot).
    rates_after: the rate after it, which the update of that step already
      used (one per slot).
    p_values: the p-value of the test at that event (the last test's when
      none ran, as for a divergence; one per slot).
    scores: the figure the decision compared (`Verdict.score`: a probe's
      mean loss; NaN for none; one per slot).
    num_events: the events recorded so far (int32); the next goes to slot
      `num_events % HISTORY_LENGTH`.
    given_rate: the `learning_rate` given to `exptest` when `init` made the
      state: the run's starting point, against which a rate injected later
      (`optax.inject_hyperparams`) is checked.

  Examples:
    >>> import jax.numpy as jnp, optax_exptest
    >>> state = optax_exptest.exptest(0.1).init(jnp.zeros(3))
    >>> state.history.steps.shape, int(state.history.num_events)
    ((16,), 0)
  """

  steps: jax.Array
  decisions: jax.Array
  rates_before: jax.Array
  rates_after: jax.Array
  p_values: jax.Array
  scores: jax.Array
  num_events: jax.Array
  given_rate: jax.Array


def init(dtype: jnp.dtype, given_rate: Any) -> History:
  """An empty record of a run started from `given_rate`."""
  slots = jnp.zeros((HISTORY_LENGTH,), jnp.int32)
  rates = jnp.zeros((HISTORY_LENGTH,), dtype)
  return History(
      steps=slots, decisions=slots, rates_before=rates, rates_after=rates,
      p_values=jnp.ones((HISTORY_LENGTH,), dtype),
      scores=jnp.full((HISTORY_LENGTH,), jnp.nan, dtype),
      num_events=jnp.zeros((), jnp.int32),
      given_rate=jnp.asarray(given_rate, dtype),
  )


def changes_run(verdict: Verdict, phase_before: jax.Array) -> jax.Array:
  """Whether a verdict changes the run: its rate, its phase, or its
  parameters (a return to the anchor)."""
  return (
      (verdict.rate_factor != 1) | verdict.restore
      | (verdict.phase != phase_before)
  )


def record(
    history: History,
    verdict: Verdict,
    phase_before: jax.Array,
    rate_before: jax.Array,
    rate_after: jax.Array,
    step: jax.Array,
) -> History:
  """Adds the event of `verdict` at update `step` (from 1) if it changes the
  run (`changes_run`); called in the decision branch only."""
  changed = changes_run(verdict, phase_before)
  slot = history.num_events % HISTORY_LENGTH
  put = lambda slots, value: jnp.where(
      changed, slots.at[slot].set(jnp.asarray(value, slots.dtype)), slots
  )
  return history._replace(
      steps=put(history.steps, step),
      decisions=put(history.decisions, verdict.decision),
      rates_before=put(history.rates_before, rate_before),
      rates_after=put(history.rates_after, rate_after),
      p_values=put(history.p_values, verdict.p_value),
      scores=put(history.scores, verdict.score),
      num_events=jnp.where(
          changed, optax.safe_increment(history.num_events), history.num_events
      ),
  )


def events(history: History) -> list:
  """The recorded events as dicts, oldest first (on the host); a list per
  arm for a vmapped state.

  Each dict has `step`, `decision`, `decision_name`, `rate_before`,
  `learning_rate`, `p_value` and `score` (None when the decision compared
  none; a probe's mean loss at `rate_before`).
  """
  h = jax.tree.map(np.asarray, history)
  if h.num_events.ndim > 0:  # vmapped: one record per arm
    return [events(jax.tree.map(lambda x, i=i: x[i], h))
            for i in range(len(h.num_events))]
  count = int(h.num_events)
  order = np.arange(max(0, count - HISTORY_LENGTH), count) % HISTORY_LENGTH
  return [
      dict(
          step=int(h.steps[i]),
          decision=int(h.decisions[i]),
          decision_name=Decision(int(h.decisions[i])).name.lower(),
          rate_before=float(h.rates_before[i]),
          learning_rate=float(h.rates_after[i]),
          p_value=float(h.p_values[i]),
          score=None if np.isnan(h.scores[i]) else float(h.scores[i]),
      )
      for i in order
  ]
