"""A run's loss with ExpTest's decisions marked (matplotlib, imported lazily)."""

import collections.abc
import types
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from optax_exptest._src.decision import Decision
from optax_exptest._src.observe import DECISION_COLORS

#: What a marked decision means, for the legend. `Decision.DECREASING` (the
#: loss still falls, rate kept) ends every tuning window and is not marked by
#: default; `Decision.NONE` (no test this step) never is.
DECISION_LABELS: Mapping[Decision, str] = types.MappingProxyType({
    Decision.EXPONENTIAL: "exponential decay: tuning",
    Decision.RESTART: "no decay: cut + reset",
    Decision.DECREASING: "still decreasing: rate kept",
    Decision.PLATEAU: "plateau: cut",
    Decision.DIVERGED: "diverged: cut + reset",
    Decision.SKIPPED: "fault skipped",
    Decision.PROBE: "probe scored: next rate",
    Decision.BEST_PROBE: "best probe: tuning",
})

#: The decisions `plot_run` and `mark_decisions` mark by default: every one
#: that changes the rate, the phase or the parameters, and skipped faults.
MARKED: frozenset = frozenset(set(DECISION_LABELS) - {Decision.DECREASING})


def _pyplot():
  """`matplotlib.pyplot`, or an error that says how to install it."""
  try:
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        "optax_exptest.plotting needs matplotlib: pip install"
        " \"optax_exptest[plots]\" (or pip install matplotlib)."
    ) from e
  return plt


def _decision(value: Any) -> Decision:
  """A `Decision` from its code, its member or its name ('plateau')."""
  if isinstance(value, str):
    try:
      return Decision[value.upper()]
    except KeyError:
      names = ", ".join(d.name.lower() for d in Decision)
      raise ValueError(
          f"plotting: unknown decision {value!r}; the names are {names}."
      ) from None
  return Decision(int(value))


def _is_records(x: Any) -> bool:
  return (isinstance(x, collections.abc.Sequence) and not isinstance(x, str)
          and len(x) > 0 and isinstance(x[0], collections.abc.Mapping))


def _one_run(name: str, values: Any) -> np.ndarray:
  """A 1-D float array, or an error that names the argument."""
  a = np.asarray(values, dtype=float)
  if a.ndim != 1:
    raise ValueError(
        f"plotting: {name} must hold one value per step of one run, got shape"
        f" {a.shape}; for vmapped arms or seeds, plot each on its own axes"
        " (e.g. losses[i])."
    )
  return a


def _from_records(records: Sequence[Mapping], decisions: Any, rates: Any):
  """Losses, decisions, rates and steps from per-step `exptest_summary` dicts
  with the loss added (`dict(exptest_summary(state), loss=loss)`)."""
  missing = [i for i, r in enumerate(records) if "loss" not in r]
  if missing:
    raise ValueError(
        "plotting: each record needs the step's loss under 'loss'"
        f" (record {missing[0]} has keys {sorted(records[missing[0]])}): log"
        " dict(optax_exptest.exptest_summary(state), loss=loss)."
    )
  column = lambda key: [r[key] for r in records] if all(key in r for r in records) else None
  losses = column("loss")
  if decisions is None:
    decisions = column("decision")
  if rates is None:
    rates = column("learning_rate")
  steps = column("step")
  return losses, decisions, rates, steps


def _events_of_one_run(decisions: Any) -> Any:
  """`decisions`, or the events of an `exptest_summary` passed whole; an
  error that names a history of several runs (vmapped arms)."""
  if isinstance(decisions, collections.abc.Mapping):
    if "history" not in decisions:
      raise ValueError(
          "plotting: decisions is a mapping without 'history'; pass"
          " exptest_summary(state) or its 'history'."
      )
    decisions = decisions["history"]
  if (isinstance(decisions, collections.abc.Sequence) and decisions
      and _is_records(decisions[0])):
    raise ValueError(
        f"plotting: decisions holds the histories of {len(decisions)} runs"
        " (vmapped arms); plot each on its own axes (history[i])."
    )
  return decisions


def _decision_events(decisions: Any, steps: Any) -> list[tuple[float, Decision]]:
  """`(step, decision)` pairs from one decision per step or from events.

  Args:
    decisions: one decision per step (codes, `Decision`s or names); or
      events, mappings with `"step"` (the update's number, as
      `exptest_summary` counts) and `"decision"`, such as
      `exptest_summary(state)["history"]` (empty: nothing happened).
    steps: the update number of each step (None: 1, 2, ...); unused with
      events.
  """
  if _is_records(decisions):
    return [(float(e["step"]), _decision(e["decision"])) for e in decisions]
  codes = list(decisions)
  if not codes:  # no decision, whichever form was meant
    return []
  steps = np.arange(1, len(codes) + 1) if steps is None else np.asarray(steps)
  if len(codes) != len(steps):
    raise ValueError(
        f"plotting: decisions has {len(codes)} entries and losses {len(steps)}:"
        " pass one decision per step, or events ({'step': s, 'decision': d})."
    )
  return [(float(s), d) for s, d in zip(steps, map(_decision, codes)) if d != Decision.NONE]


def mark_decisions(ax: Any, decisions: Any, *, steps: Optional[Iterable[float]] = None,
                   marked: Iterable[Decision] = MARKED, seen: Optional[set] = None,
                   label_prefix: str = "") -> set:
  """Vertical lines at the steps where ExpTest decided something.

  Args:
    ax: a matplotlib `Axes`.
    decisions: one decision per step (codes as `ExpTestState.decision`,
      `Decision`s or names), or events: mappings with `"step"` and
      `"decision"`.
    steps: the update number of each step when `decisions` has one per step
      (default `1, 2, ...`: the first update is step 1, as `exptest_summary`
      counts).
    marked: the decisions to draw (default `MARKED`).
    seen: legend labels already drawn (e.g. on another panel), so that each
      label appears once; updated in place.
    label_prefix: put before each label (e.g. `"ExpTest: "` beside other
      optimizers' curves).

  Returns:
    The labels drawn so far (`seen`).

  Examples:
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> from optax_exptest import plotting, Decision
    >>> fig, ax = plt.subplots()
    >>> labels = plotting.mark_decisions(ax, [0, 0, Decision.RESTART, 0, 1])
    >>> sorted(labels), len(ax.lines)
    (['exponential decay: tuning', 'no decay: cut + reset'], 2)
    >>> plt.close(fig)
  """
  seen = set() if seen is None else seen
  marked = {_decision(d) for d in marked}
  for step, decision in _decision_events(decisions, steps):
    if decision not in marked:
      continue
    label = label_prefix + DECISION_LABELS[decision]
    ax.axvline(step, color=DECISION_COLORS[decision], ls="--", lw=0.9,
               label=None if label in seen else label)
    seen.add(label)
  return seen


def _moving_average(losses: np.ndarray, window: int) -> np.ndarray:
  """Trailing mean of the last `window` finite losses at each step (NaN
  until the first `window` steps): a skipped non-finite loss does not blank
  the curve around it."""
  finite = np.isfinite(losses)
  sums = np.cumsum(np.where(finite, losses, 0.0))
  counts = np.cumsum(finite)
  sums[window:] = sums[window:] - sums[:-window]
  counts[window:] = counts[window:] - counts[:-window]
  with np.errstate(invalid="ignore", divide="ignore"):
    mean = sums / counts
  mean[:window - 1] = np.nan
  return mean


def _rates_from_events(events: Sequence[Mapping], steps: np.ndarray) -> np.ndarray:
  """The rate at each step from events that carry it (a history): the rate
  after the last event at or before the step (a decision applies to its own
  update), the first event's `rate_before` before it (NaN if absent)."""
  events = sorted(events, key=lambda e: e["step"])
  at = np.array([e["step"] for e in events], dtype=float)
  after = np.array([e["learning_rate"] for e in events], dtype=float)
  before = float(events[0].get("rate_before", np.nan))
  last = np.searchsorted(at, steps, side="right") - 1
  return np.where(last >= 0, after[np.maximum(last, 0)], before)


def _checked_run(losses: Any, decisions: Any, rates: Any, steps: Any):
  """`plot_run`'s inputs as one run, checked before anything is drawn.

  Returns:
    The losses and their steps (1-D float arrays), the decisions as events
    (`{"step", "decision"}` mappings; None without decisions) and the rates
    (a 1-D float array or None).
  """
  record_steps = None
  if _is_records(losses):
    losses, decisions, rates, record_steps = _from_records(losses, decisions, rates)
  if decisions is not None:
    decisions = _events_of_one_run(decisions)
  losses = _one_run("losses", losses)
  if steps is None:
    steps = record_steps if record_steps is not None else np.arange(1, len(losses) + 1)
  steps = _one_run("steps", steps)
  lengths = {"steps": len(steps)}
  if rates is not None:
    rates = _one_run("rates", rates)
    lengths["rates"] = len(rates)
  for name, length in lengths.items():
    if length != len(losses):
      raise ValueError(f"plotting: {name} has {length} entries and losses {len(losses)}.")
  events = None
  if decisions is not None:
    events = [dict(step=s, decision=d) for s, d in _decision_events(decisions, steps)]
    if (rates is None and _is_records(decisions)
        and all("learning_rate" in e for e in decisions)):
      rates = _rates_from_events(decisions, steps)
  return losses, steps, events, rates


def plot_run(losses: Any, decisions: Any = None, rates: Any = None, *,
             steps: Any = None, ax: Any = None, smooth: Optional[int] = None,
             raw: bool = True, log_loss: Optional[bool] = None,
             log_steps: bool = False, marked: Iterable[Decision] = MARKED,
             title: Optional[str] = None, loss_label: str = "training loss",
             rate_label: str = "learning rate", legend: bool = True) -> Any:
  """A run's training loss, ExpTest's decisions marked, its rate beside.

  The loss is drawn with its trailing moving average, each decision as a
  vertical line in `DECISION_COLORS`, and the rate (if given) as a step
  curve on a second, logarithmic axis.

  Args:
    losses: the training loss of each step, shape `(steps,)`; or the run's
      per-step records, each `dict(exptest_summary(state), loss=loss)`, from
      which `decisions`, `rates` and `steps` are read when not given.
    decisions: one decision per step (the state's `decision` codes,
      `Decision`s or names), or events: mappings with `"step"` and
      `"decision"`, such as the run's history from the final state,
      `exptest_summary(state)["history"]` (or the summary itself), whose
      rates then draw the rate curve.
    rates: the learning rate after each step (the state's
      `learning_rate`), shape `(steps,)`; None draws the events' rates if
      they carry them, else no rate.
    steps: each loss's update number (default `1, 2, ...`, or the records'
      `"step"`).
    ax: the matplotlib `Axes` to draw on (default: a new figure).
    smooth: the moving average's window in steps (default: a twentieth of
      the run, at most 100; 1 draws the loss as it is).
    raw: draw the loss itself, in light grey, beneath its average.
    log_loss: a logarithmic loss axis (default: when no finite loss is
      negative, as for a squared error or a cross-entropy).
    log_steps: a logarithmic step axis.
    marked: the decisions to mark (default `MARKED`: all but `decreasing`).
    title, loss_label, rate_label: the labels.
    legend: draw a legend of the loss, the rate and the decisions.

  Returns:
    The loss's `Axes` (its figure: `ax.figure`; the rate's axis is its twin).

  Raises:
    ImportError: matplotlib is missing (`pip install "optax_exptest[plots]"`).
    ValueError: the inputs are not one run, or their lengths differ.

  Examples:
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import numpy as np
    >>> from optax_exptest import plotting
    >>> losses = np.exp(-np.arange(200) / 50.0)
    >>> decisions = np.zeros(200, int); decisions[[40, 120]] = [1, 4]
    >>> rates = np.where(np.arange(200) < 120, 0.1, 0.033)
    >>> ax = plotting.plot_run(losses, decisions, rates, title="a run")
    >>> ax.get_title(), ax.get_yscale(), type(ax.figure).__name__
    ('a run', 'log', 'Figure')

    From the final state and a loss recorded per step (the history holds
    the run's last 16 changes):

    >>> import jax, jax.numpy as jnp, optax, optax_exptest
    >>> tx = optax_exptest.exptest(1.0, sgd_correction=False)
    >>> loss_fn = lambda w: jnp.sum((w - 1.0) ** 2)
    >>> w = jnp.zeros(2); state = tx.init(w); losses = []
    >>> for _ in range(60):
    ...   loss, grads = jax.value_and_grad(loss_fn)(w)
    ...   updates, state = tx.update(grads, state, w, value=loss)
    ...   w = optax.apply_updates(w, updates); losses.append(float(loss))
    >>> history = optax_exptest.exptest_summary(state)["history"]
    >>> [(e["step"], e["decision_name"]) for e in history]
    [(4, 'restart'), (10, 'exponential'), (16, 'plateau'), (54, 'plateau')]
    >>> ax = plotting.plot_run(losses, history)
  """
  losses, steps, events, rates = _checked_run(losses, decisions, rates, steps)
  plt = _pyplot()
  if ax is None:
    _, ax = plt.subplots(figsize=(9, 4.5))
  window = smooth if smooth is not None else max(1, min(100, len(losses) // 20))
  if window > 1 and raw:
    ax.plot(steps, losses, color="0.8", lw=0.5, label="each step")
  if window > 1:
    ax.plot(steps, _moving_average(losses, window), color="k", lw=1.2,
            label=f"{window}-step mean")
  else:
    ax.plot(steps, losses, color="k", lw=1.0, label=loss_label)
  finite = losses[np.isfinite(losses)]
  if log_loss if log_loss is not None else (finite.size > 0 and finite.min() >= 0
                                            and finite.max() > 0):
    ax.set_yscale("log")
  if log_steps:
    ax.set_xscale("log")
  ax.set_xlabel("step (log scale)" if log_steps else "step")
  ax.set_ylabel(loss_label)
  if events is not None:
    mark_decisions(ax, events, marked=marked)
  handles, labels = ax.get_legend_handles_labels()
  if rates is not None:
    twin = ax.twinx()  # The rate on its own (log) axis: it moves by factors.
    (line,) = twin.step(steps, rates, where="post", color="C0", lw=1.2, alpha=0.8)
    twin.set_yscale("log")
    twin.set_ylabel(rate_label, color="C0")
    handles, labels = handles + [line], labels + [rate_label]
  if title is not None:
    ax.set_title(title)
  if legend:
    ax.legend(handles, labels, loc="best", fontsize=8)
  return ax
