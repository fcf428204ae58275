"""Figures of the experiments (matplotlib, written as PNG).

ExpTest's decisions are drawn by the library's `optax_exptest.plotting`
(`plot_run`, `mark_decisions`), as a user draws them.
"""

import pathlib

import numpy as np

from benchmarks.lib import common, optimizers
from optax_exptest import plotting

# Beside other optimizers' curves, a decision's legend says whose it is.
LABEL_PREFIX = "ExpTest: "


def pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def loss_panels(curves, factors, path: pathlib.Path, *, smooth: int, ylim=None,
                title: str = "", ylabel: str = "training loss", logy=False):
  """One panel per rate factor, as the paper's figures 1, 3 and 4.

  Args:
    curves: `{optimizer: {"factors": [f or None], "losses": (F, seeds, steps),
      "decisions": (F, seeds, steps)}}`; optimizers without a grid (factor
      None) appear in every panel.
    factors: the panels' rate factors.
    path: the PNG to write.
    smooth: moving-average window (steps).
    ylim: y limits, e.g. `(None, 0.4)` as the paper cuts its plots.
    title, ylabel: labels.
    logy: log-scaled loss axis.
  """
  plt = pyplot()
  cols = 3
  rows = -(-(len(factors) + 1) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows),
                           sharey=True, squeeze=False)
  axes = axes.ravel()
  colors = plt.get_cmap("tab20").colors
  for panel, f in zip(axes, factors):
    seen = set()
    for i, (name, c) in enumerate(curves.items()):
      fs = list(c["factors"])
      row = fs.index(None) if None in fs else (fs.index(f) if f in fs else None)
      if row is None:
        continue
      losses = np.asarray(c["losses"][row], float)
      mean = np.nanmean(losses, axis=0)
      y = common.moving_average(mean[None], smooth)[0]
      x = np.arange(len(y)) + smooth
      grid = optimizers.OPTIMIZERS[name].uses_grid
      panel.plot(x, y, lw=2.2 if name == "exptest" else 1.1,
                 ls="-" if grid or name.startswith("exptest") else "--",
                 color="k" if name == "exptest" else colors[i % len(colors)],
                 label=optimizers.OPTIMIZERS[name].label)
      if name == "exptest":
        plotting.mark_decisions(panel, np.asarray(c["decisions"][row][0]), seen=seen,
                                label_prefix=LABEL_PREFIX)
    panel.set_title(f"{f:g} x eta_max")
    panel.set_xlabel("step")
    if logy:
      panel.set_yscale("log")
    if ylim is not None:
      panel.set_ylim(*ylim)
  for ax in axes[::cols]:
    ax.set_ylabel(ylabel)
  handles, labels = [], []
  for ax in axes[: len(factors)]:
    for h, label in zip(*ax.get_legend_handles_labels()):
      if label not in labels:
        handles.append(h)
        labels.append(label)
  legend_ax = axes[len(factors)]
  legend_ax.axis("off")
  legend_ax.legend(handles, labels, loc="center", ncol=2, fontsize=8, frameon=False)
  for ax in axes[len(factors) + 1:]:
    ax.axis("off")
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def decision_panels(runs, path: pathlib.Path, *, smooth: int, title: str = "",
                    ylabel: str = "training loss", logy: bool = False,
                    cols: int = 3):
  """One panel per ExpTest run: its loss, its rate and its decisions.

  Args:
    runs: a list of `{"label", "losses": (steps,), "rates": (steps,),
      "decisions": (steps,)}`, one per panel.
    path: the PNG to write.
    smooth: moving-average window of the loss (steps).
    title, ylabel: labels.
    logy: log-scaled loss axis.
    cols: panels per row.
  """
  plt = pyplot()
  rows = -(-len(runs) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows),
                           squeeze=False)
  axes = axes.ravel()
  for ax, run in zip(axes, runs):
    plotting.plot_run(run["losses"], run["decisions"], run["rates"], ax=ax,
                      smooth=smooth, raw=False, log_loss=logy, legend=False,
                      loss_label=ylabel, rate_label="ExpTest's rate")
    ax.set_title(run["label"], fontsize=9)
  for ax in axes[len(runs):]:
    ax.axis("off")
  handles, labels = [], []
  for ax in axes[: len(runs)]:
    for h, label in zip(*ax.get_legend_handles_labels()):
      if label not in labels:
        handles.append(h)
        labels.append(label)
  fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8,
             frameon=False)
  fig.suptitle(title)
  fig.tight_layout(rect=(0, 0.04, 1, 1))
  fig.savefig(path, dpi=90)
  plt.close(fig)
