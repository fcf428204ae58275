"""optax_exptest.plotting: a run's loss with ExpTest's decisions marked."""
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_exptest
from optax_exptest import Decision, plotting

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
  yield
  plt.close("all")


def _marks(ax):
  """(step, colour) of each vertical line `mark_decisions` drew."""
  return [(float(line.get_xdata()[0]), line.get_color()) for line in ax.lines
          if list(line.get_ydata()) == [0, 1]]


def _rate_line(ax):
  (twin,) = [a for a in ax.figure.axes if a is not ax and a.bbox.bounds == ax.bbox.bounds]
  (line,) = twin.lines
  return twin, line


def _recorded_run(steps=300):
  """A full-batch least-squares run of ExpTest with momentum: per step the
  loss, the state's decision and rate, and `exptest_summary` with the loss."""
  x = jax.random.normal(jax.random.key(0), (200, 4))
  y = x @ jnp.arange(1.0, 5.0)
  loss_fn = lambda w: 0.5 * jnp.mean((x @ w - y) ** 2)
  tx = optax_exptest.exptest(optax_exptest.lr_upper_bound(x, loss="mse"),
                             inner=optax.trace(0.9), sgd_correction=False)

  @jax.jit
  def step(w, state):
    loss, grads = jax.value_and_grad(loss_fn)(w)
    updates, state = tx.update(grads, state, w, value=loss)
    return optax.apply_updates(w, updates), state, loss

  w, state = jnp.zeros(4), tx.init(jnp.zeros(4))
  losses, decisions, rates, records = [], [], [], []
  for _ in range(steps):
    w, state, loss = step(w, state)
    losses.append(float(loss))
    decisions.append(int(state.decision))
    rates.append(float(state.learning_rate))
    records.append(dict(optax_exptest.exptest_summary(state), loss=float(loss)))
  return np.array(losses), np.array(decisions), np.array(rates), records


def test_one_colour_and_one_label_per_decision():
  colors = optax_exptest.DECISION_COLORS
  assert set(colors) == set(Decision) - {Decision.NONE}
  assert len(set(colors.values())) == len(colors)
  assert set(plotting.DECISION_LABELS) == set(colors)
  assert len(set(plotting.DECISION_LABELS.values())) == len(colors)
  assert plotting.MARKED == set(colors) - {Decision.DECREASING}


def test_plot_run_marks_each_decision_at_its_step_with_its_colour():
  losses, decisions, rates, _ = _recorded_run()
  marked = [i + 1 for i, d in enumerate(decisions) if Decision(d) in plotting.MARKED]
  assert marked, "the run should decide something (exponential decay at least)"
  ax = plotting.plot_run(losses, decisions, rates, title="least squares")
  assert _marks(ax) == [(float(s), optax_exptest.DECISION_COLORS[Decision(decisions[s - 1])])
                        for s in marked]
  twin, line = _rate_line(ax)
  np.testing.assert_array_equal(line.get_ydata(), rates)
  np.testing.assert_array_equal(line.get_xdata(), np.arange(1, len(losses) + 1))
  assert twin.get_yscale() == "log" and ax.get_yscale() == "log"
  assert ax.get_title() == "least squares"
  labels = [t.get_text() for t in ax.get_legend().get_texts()]
  assert len(labels) == len(set(labels))
  for d in {Decision(decisions[s - 1]) for s in marked}:
    assert plotting.DECISION_LABELS[d] in labels
  assert plotting.DECISION_LABELS[Decision.DECREASING] not in labels


def test_plot_run_reads_exptest_summary_records_as_arrays():
  losses, decisions, rates, records = _recorded_run()
  from_arrays = plotting.plot_run(losses, decisions, rates)
  from_records = plotting.plot_run(records)
  assert _marks(from_records) == _marks(from_arrays)
  for a, b in zip(from_arrays.lines, from_records.lines):
    np.testing.assert_array_equal(a.get_xydata(), b.get_xydata())
  np.testing.assert_array_equal(_rate_line(from_records)[1].get_ydata(), rates)


def test_decisions_as_events_and_as_names():
  losses = np.linspace(2.0, 1.0, 50)
  events = [{"step": 10, "decision": "exponential"},
            {"step": 30, "decision": Decision.PLATEAU},
            {"step": 40, "decision": 3}]  # decreasing: not marked by default
  ax = plotting.plot_run(losses, events)
  colors = optax_exptest.DECISION_COLORS
  assert _marks(ax) == [(10.0, colors[Decision.EXPONENTIAL]), (30.0, colors[Decision.PLATEAU])]
  ax = plotting.plot_run(losses, events, marked=["decreasing"])
  assert _marks(ax) == [(40.0, colors[Decision.DECREASING])]

  # A run too short for any decision: an empty list of events (the demo's
  # record of a short run) draws the loss and marks nothing.
  ax = plotting.plot_run(losses, [], np.full(50, 0.1))
  assert _marks(ax) == []


def test_moving_average_skips_a_non_finite_loss_and_trails():
  losses = np.ones(60)
  losses[30] = np.nan
  losses[40] = np.inf
  ax = plotting.plot_run(losses, smooth=10)
  raw, mean = ax.lines[:2]
  y = mean.get_ydata()
  assert np.isnan(y[:9]).all()  # the first full window ends at step 10
  np.testing.assert_allclose(y[9:], 1.0)
  np.testing.assert_array_equal(raw.get_ydata(), losses)
  assert ax.get_yscale() == "log"
  ax = plotting.plot_run(np.linspace(1.0, -1.0, 40), smooth=1)  # a loss below 0
  assert ax.get_yscale() == "linear" and len(ax.lines) == 1


def test_mark_decisions_labels_once_across_panels():
  fig, (a, b) = plt.subplots(1, 2)
  seen = plotting.mark_decisions(a, [0, 2, 0, 2], label_prefix="ExpTest: ")
  plotting.mark_decisions(b, [2, 4], seen=seen, label_prefix="ExpTest: ")
  labels = [line.get_label() for ax in (a, b) for line in ax.lines]
  assert labels.count("ExpTest: no decay: cut + reset") == 1
  assert "ExpTest: plateau: cut" in labels
  assert [s for s, _ in _marks(a)] == [2.0, 4.0] and [s for s, _ in _marks(b)] == [1.0, 2.0]


@pytest.mark.parametrize("call, message", [
    (lambda: plotting.plot_run(np.ones((3, 10))), r"one value per step of one run.*\(3, 10\)"),
    (lambda: plotting.plot_run(np.ones(10), np.zeros(9)), "decisions has 9 entries and losses 10"),
    (lambda: plotting.plot_run(np.ones(10), rates=np.ones(11)), "rates has 11 entries"),
    (lambda: plotting.plot_run(np.ones(3), ["none", "cut", "none"]), "unknown decision 'cut'"),
    (lambda: plotting.plot_run([{"step": 1, "decision": 0}]), "needs the step's loss under 'loss'"),
], ids=["vmapped", "decisions-length", "rates-length", "name", "record-without-loss"])
def test_bad_input_is_named(call, message):
  with pytest.raises(ValueError, match=message):
    call()


def test_without_matplotlib_the_error_names_the_extra(monkeypatch):
  monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
  with pytest.raises(ImportError, match=r'optax_exptest\[plots\]'):
    plotting.plot_run(np.ones(5))
