"""The scoreboard of issue 28: one ExpTest configuration on every task, against its targets.

`python -m benchmarks scoreboard [--exptest-kwargs JSON] [--no-horizon]
[--seeds N] [--tasks NAME ...] [--quick] [--full] [--out NAME]` runs
ExpTest, built by `optimizers.build_exptest` with `--exptest-kwargs`
forwarded to `optax_exptest.exptest`, on the tasks below; prints one table
(task, inner, the metric per seed, its median or mean, the target, pass or
fail) and the wall and CPU time of each task; writes `NAME.json`, `NAME.md`
and `NAME.png` under `benchmarks/results/` (`--out scoreboard` by default; a
path with a `/` is a folder instead, the results then named `scoreboard`).
Configurations compare side by side: run each with its own `--out`, then
`python -m benchmarks scoreboard --compare NAME NAME ...`.

Every training loop knows its number of updates: where
`optax_exptest.exptest` takes a `horizon` keyword, each run gets
`horizon=<its number of updates>` unless `--no-horizon` is given.

Tasks (`--tasks`; all by default) and their targets (the constants below, from
issue 28 and `benchmarks/RESULTS.md`); `--seeds` seeds (3) unless said:

* `algoperf_mnist`: AlgoPerf's MNIST workload (`algoperf_mnist.program`:
  MLP 784-128-sigmoid-10, batch 64, 7813 steps, validation accuracy every 100
  steps) with inner none, `optax.trace(0.9)` and `optax.scale_by_adam()`,
  from `lr_upper_bound(x)`: median steps to 0.97 at most 3,500 and every run
  at least 0.97 at the end.
* `nnx_tutorial`: the official Flax NNX MNIST tutorial's CNN (BatchNorm and
  dropout; `lib/nnx_tutorial.py`), one epoch at batch 32 (1,875 steps), the
  optimizer swapped, from `lr_upper_bound` of its pixels: momentum at least
  99.0 %, Adam at least 98.80 % test accuracy.
* `flax_cnn`: the benchmarks' Flax CNN (`lib/cnn.train`, as `inner_rules
  --task cnn`: batch 128; the targets are for 3 epochs): momentum at least
  99.00, Adam at least 98.94.
* `char_gpt`: the character GPT (`char_gpt.program`, 600 steps), ExpTest with
  Adam and the recipe's weight decay inside, from `lr_upper_bound_from_model`:
  mean final validation loss within 0.03 nats of the AdamW grid's best and at
  or below Prodigy's.
* No regression: `mnist_logreg` (Table 1's setting, batch 32, 5 epochs, 5
  seeds: every inner), `california` (Table 3's, momentum, 10 seeds: the mean
  of seeds 0-4 against Table 3's, and no seed collapsed to the constant
  predictor) and `bad_batches` (issue 21's table: every inner at 0, 0.1 and
  1 % corrupt batches, `bad_batches.measure`). These targets are one-sided:
  a better figure passes.

The step-time target (`python -m benchmarks step_time`, single run at most
1.08) is not run here; the table's notes name it.

Sizes. The default run must take under 20 minutes on two CPU cores. On this
repository's two-core machine, shared with other work (load 5-13), the
baseline (`results/scoreboard_paper.json`) took 2390 s wall and 1260 s of
process CPU time: AlgoPerf 163, the NNX tutorial 226 (two runs), the Flax CNN
192 (two one-epoch runs), char_gpt 186, MNIST logistic regression 86,
California 305, bad batches 101. A run of the tutorial's epoch costs about
115 s of CPU and an epoch of the Flax CNN about 100, so their full sizes (3
seeds of each inner; the Flax CNN's 3 epochs) would add about 40
CPU-minutes: by default the tutorial runs seed 0 (as issue 28's prototype
did) and the Flax CNN one epoch of seed 0, rows marked in the table;
`--full` runs them at full size. `--quick` is a smoke run: every task, one
inner each, one seed, a few dozen steps (about 150 s of CPU, most of it
compiling ExpTest once per task, about 9 s of CPU a program).

Run: `python -m benchmarks scoreboard [--quick]`.
"""

import inspect
import json
import os
import pathlib
import time
from typing import Callable, NamedTuple

import numpy as np

import optax_exptest
from benchmarks import algoperf_mnist, bad_batches, char_gpt
from benchmarks.lib import common, optimizers, problems, trainers

# ----------------------------------------------------------------------------
# Targets. Issue 28 ("Targets") names them; the figures they compare with are
# those of benchmarks/RESULTS.md, section by section as cited.

# AlgoPerf MNIST (issue 28): the self-tuning winner's 3,500 steps to 0.97
# (schedule-free AdamW at batch 64); every run must also end at 0.97.
ALGOPERF_TARGET_ACCURACY = algoperf_mnist.TARGET  # 0.97
ALGOPERF_MAX_MEDIAN_STEPS = 3_500
# The Flax NNX tutorial, one epoch (issue 28): momentum 99.0 %, Adam 98.80 %
# (schedule-free AdamW's default there).
NNX_TUTORIAL_MIN_ACCURACY = {"momentum": 99.0, "adam": 98.80}
# The benchmarks' Flax CNN, 3 epochs (issue 28; RESULTS.md "ExpTest with
# momentum and Adam inside", the grids' best: SGD w/ mom. 99.00 at 1 x
# eta_max, Adam 98.94 at 0.1 x eta_max, 2 seeds).
FLAX_CNN_MIN_ACCURACY = {"momentum": 99.00, "adam": 98.94}
# char_gpt (issue 28; RESULTS.md "Character GPT on tiny Shakespeare": the
# AdamW grid's best, peak 0.01, 1.9549; Prodigy 1.9798; 2 seeds).
CHAR_GPT_ADAMW_BEST = 1.955
CHAR_GPT_MAX_GAP = 0.03
CHAR_GPT_PRODIGY = 1.980
CHAR_GPT_QUICK_START = 0.01
# MNIST logistic regression (RESULTS.md "Table 1", 5 seeds: ExpTest 92.23,
# ExpTest w/ mom. 92.26, ExpTest (Adam scaling) 92.46); issue 28: within 0.15.
MNIST_LOGREG_REFERENCE = {"sgd": 92.23, "momentum": 92.26, "adam": 92.46}
MNIST_LOGREG_TOLERANCE = 0.15
MNIST_LOGREG_SEEDS = 5
# California housing (RESULTS.md "Table 3", ExpTest w/ mom. 0.2672 over seeds
# 0-4, final iterate); issue 28: within 0.01, and no seed of 10 at the
# constant predictor's test MSE (RESULTS.md: 1.3106, Adam at eta_max).
CALIFORNIA_REFERENCE = 0.2672
CALIFORNIA_TOLERANCE = 0.01
CALIFORNIA_SEEDS, CALIFORNIA_MEAN_SEEDS = 10, 5
CALIFORNIA_CONSTANT_PREDICTOR = 1.3106
# Bad batches (RESULTS.md "Bad batches", issue 21's table: test accuracy,
# mean of 3 seeds, ExpTest as a user writes it); issue 28: within 0.2.
BAD_BATCHES_REFERENCE = {
    ("sgd", 0.0): 92.16, ("sgd", 0.001): 92.12, ("sgd", 0.01): 92.07,
    ("momentum", 0.0): 92.15, ("momentum", 0.001): 92.13, ("momentum", 0.01): 92.06,
    ("adam", 0.0): 92.48, ("adam", 0.001): 92.49, ("adam", 0.01): 92.46,
}
BAD_BATCHES_TOLERANCE = 0.2
# Not run here (issue 28): `python -m benchmarks step_time`, single run.
STEP_TIME_MAX_RATIO = 1.08

# Sizes. The Flax CNN's full size (issue 28: `inner_rules --task cnn`), and
# the default sizes of the two CNN tasks, where the full ones do not fit the
# 20 minutes (module docstring); `--full` runs `--seeds` seeds and 3 epochs.
CNN_FULL_EPOCHS = 3
NNX_SEEDS, CNN_SEEDS, CNN_EPOCHS = 1, 1, 1

INNER_LABELS = {"sgd": "none", "momentum": "momentum 0.9", "adam": "Adam"}


# ----------------------------------------------------------------------------
# ExpTest as every task builds it.


def accepts_horizon() -> bool:
  """Whether `optax_exptest.exptest` takes the run's number of updates."""
  return "horizon" in inspect.signature(optax_exptest.exptest).parameters


class ExpTest(NamedTuple):
  """`optimizers.build_exptest` with the configuration under test.

  Attributes:
    kwargs: keyword arguments of `optax_exptest.exptest` (`--exptest-kwargs`).
    horizon: pass each run's number of updates as `horizon=`.
  """

  kwargs: dict
  horizon: bool

  def options(self, steps: int, **task) -> dict:
    """The keyword arguments of one run of `steps` updates; the task's own
    settings (`task`: full-batch training's `sgd_correction=False`) win."""
    extra = dict(horizon=steps) if self.horizon else {}
    return {**self.kwargs, **extra, **task}

  def __call__(self, learning_rate, inner: str, steps: int, **task):
    return optimizers.build_exptest(learning_rate, inner, **self.options(steps, **task))


# ----------------------------------------------------------------------------
# Rows of the table.


def _row(task: str, inner: str, metric: str, values, stat: str, target: str,
         passed: bool, *, threshold: float | None = None, size: str = "full",
         value: float | None = None, **details) -> dict:
  """One row: `values` per seed, their `stat` ("median" counts a run that
  never reached the target, nan, as the slowest; `value` if given), the
  target (its text, and the `threshold` the figure draws), its result, and
  the task's size ("full" or what it ran instead)."""
  values = [float(v) for v in values]
  value = _statistic(values, stat) if value is None else value
  return dict(task=task, inner=inner, metric=metric, values=values, stat=stat,
              value=value, target=target, passed=bool(passed),
              threshold=threshold, size=size, **details)


def _statistic(values, stat: str) -> float:
  """The mean, or the median counting a nan (never reached) as the slowest."""
  v = np.asarray(values, float)
  if stat == "median":
    return float(np.median(np.where(np.isnan(v), np.inf, v)))
  return float(np.mean(v))


def _inners(args, inners: tuple[str, ...], quick: str) -> tuple[str, ...]:
  """A task's inners: one in a quick run (each task a different one, so that
  the quick run still builds every inner)."""
  return (quick,) if args.quick else inners


def _seeds(args, seeds: int) -> int:
  return 1 if args.quick else seeds


def _at_least(values, floor: float) -> bool:
  return bool(np.all(np.isfinite(values))) and float(np.mean(values)) >= floor


# ----------------------------------------------------------------------------
# The tasks: `task(exptest, args) -> (rows, details for the JSON)`.


def algoperf_task(exptest: ExpTest, args):
  """AlgoPerf MNIST (`algoperf_mnist.program`), every inner, from
  `lr_upper_bound(x)`."""
  data = algoperf_mnist.load(args.quick)
  epochs = 1 if args.quick else algoperf_mnist.EPOCHS
  eta = float(optax_exptest.lr_upper_bound(data[0]))
  rows, curves = [], {}
  for inner in _inners(args, ("sgd", "momentum", "adam"), "sgd"):
    run_seed = algoperf_mnist.program(
        lambda steps, inner=inner: exptest(eta, inner, steps), 64, data,
        epochs=epochs, evaluated_at_average=False)
    steps_to, finals, largest, final_rates, acc_curves = [], [], [], [], []
    for seed in range(_seeds(args, args.seeds)):
      run = run_seed(seed)
      acc = np.asarray(run.evals, float)
      rates = np.asarray(run.records[1], float)
      steps_to.append(trainers.first_reaching(acc, ALGOPERF_TARGET_ACCURACY, run.eval_steps))
      finals.append(float(acc[-1]))
      largest.append(float(np.nanmax(rates)))
      final_rates.append(float(rates[-1]))
      acc_curves.append(acc.tolist())
      print("algoperf_mnist", inner, seed, finals[-1], steps_to[-1], flush=True)
    curves[inner] = dict(eval_steps=run.eval_steps.tolist(), accuracy=acc_curves)
    passed = (_statistic(steps_to, "median") <= ALGOPERF_MAX_MEDIAN_STEPS
              and min(finals) >= ALGOPERF_TARGET_ACCURACY)
    budget = int(run.eval_steps[-1])
    rows.append(_row(
        "AlgoPerf MNIST", INNER_LABELS[inner], "steps to 0.97 (final val. acc.)",
        steps_to, "median",
        f"median <= {ALGOPERF_MAX_MEDIAN_STEPS:,}; every final >= {ALGOPERF_TARGET_ACCURACY}",
        passed, threshold=ALGOPERF_MAX_MEDIAN_STEPS, final=finals, budget=budget,
        largest_rate=largest, final_rate=final_rates))
  return rows, dict(start=eta, epochs=epochs, curves=curves)


def nnx_tutorial_task(exptest: ExpTest, args):
  """The Flax NNX MNIST tutorial (`lib.nnx_tutorial`), momentum and Adam, from
  `lr_upper_bound` of its training pixels."""
  from benchmarks.lib import nnx_tutorial  # Flax: imported when used
  data = nnx_tutorial.load(320 if args.quick else None)
  eta = float(optax_exptest.lr_upper_bound(data[0].reshape(len(data[0]), -1)))
  seeds = _seeds(args, args.nnx_seeds)
  size = "full" if seeds >= args.seeds else f"{seeds} seed{'s' * (seeds > 1)}"
  rows = []
  for inner in _inners(args, ("momentum", "adam"), "momentum"):
    run_seed = nnx_tutorial.program(lambda steps, inner=inner: exptest(eta, inner, steps), data)
    runs = [run_seed(seed) for seed in range(seeds)]
    acc = [r["accuracy"][-1] for r in runs]
    print("nnx_tutorial", inner, acc, flush=True)
    floor = NNX_TUTORIAL_MIN_ACCURACY[inner]
    rows.append(_row(
        "Flax NNX tutorial (1 epoch)", INNER_LABELS[inner], "test accuracy (%)", acc,
        "mean", f"mean >= {floor:.2f}", _at_least(acc, floor), threshold=floor,
        size=size,
        final_rate=[float(r["rates"][-1]) for r in runs],
        seconds_per_run=[r["seconds"] for r in runs]))
  return rows, dict(start=eta, steps=nnx_tutorial.steps_per_epoch(data),
                    batch=nnx_tutorial.BATCH)


def flax_cnn_task(exptest: ExpTest, args):
  """The benchmarks' Flax CNN (`lib.cnn.train`, batch 128), momentum and
  Adam, from `lr_upper_bound` of its pixels (as `inner_rules --task cnn`)."""
  from benchmarks.lib import cnn  # Flax: imported when used
  data = cnn.load_mnist_images(600 if args.quick else None)
  eta = float(optax_exptest.lr_upper_bound(data[0].reshape(len(data[0]), -1)))
  epochs = 1 if args.quick else args.cnn_epochs
  seeds = _seeds(args, args.cnn_seeds)
  if epochs == CNN_FULL_EPOCHS and seeds >= args.seeds:
    size = "full"
  else:
    size = f"{seeds} seed{'s' * (seeds > 1)}" if epochs == CNN_FULL_EPOCHS else (
        f"{epochs} epoch{'s' * (epochs > 1)}, {seeds} seed{'s' * (seeds > 1)}")
  rows = []
  for inner in _inners(args, ("momentum", "adam"), "adam"):
    runs = [cnn.train(
        lambda per_epoch, inner=inner: exptest(eta, inner, epochs * per_epoch),
        data, seed, epochs) for seed in range(seeds)]
    acc = [r["accuracy"][-1] for r in runs]
    print("flax_cnn", inner, acc, flush=True)
    floor = FLAX_CNN_MIN_ACCURACY[inner]
    rows.append(_row(
        f"Flax CNN ({epochs} epoch{'s' if epochs > 1 else ''})", INNER_LABELS[inner],
        "test accuracy (%)", acc, "mean", f"mean >= {floor:.2f} (at 3 epochs)",
        _at_least(acc, floor), threshold=floor, size=size,
        per_epoch=[r["accuracy"] for r in runs],
        final_rate=[optax_exptest.exptest_summary(r["state"])["learning_rate"]
                    for r in runs],
        seconds_per_run=[r["seconds"] for r in runs]))
  return rows, dict(start=eta, epochs=epochs, batch=128)


def char_gpt_task(exptest: ExpTest, args):
  """The character GPT (`char_gpt.program`), ExpTest with Adam and the
  recipe's weight decay inside (`char_gpt.configs`' `exptest_adamw`)."""
  train, val, vocab = char_gpt.load(args.quick)
  steps = 10 if args.quick else char_gpt.STEPS
  # A quick run starts at the grid's best peak: the bound's Lanczos steps
  # cost a smoke run more than its training (`char_gpt --quick` runs them).
  eta = CHAR_GPT_QUICK_START if args.quick else char_gpt.model_bound(train, vocab)
  label, make_tx, _ = char_gpt.configs(eta, steps, exptest.options(steps))["exptest_adamw"]
  run_seed = char_gpt.program(make_tx, (train, val), vocab, steps=steps)
  losses, final_rates = [], []
  for seed in range(_seeds(args, args.seeds)):
    run = run_seed(seed)
    losses.append(float(run.evals[-1]))
    final_rates.append(float(optax_exptest.exptest_summary(run.carry[1])["learning_rate"]))
    print("char_gpt", seed, losses[-1], flush=True)
  ceiling = min(CHAR_GPT_ADAMW_BEST + CHAR_GPT_MAX_GAP, CHAR_GPT_PRODIGY)
  mean = float(np.mean(losses))
  rows = [_row(
      "char_gpt", "Adam + weight decay 0.1", "final val. loss (nats)", losses, "mean",
      f"mean <= {CHAR_GPT_ADAMW_BEST} + {CHAR_GPT_MAX_GAP} and <= Prodigy {CHAR_GPT_PRODIGY}",
      bool(np.isfinite(mean) and mean <= ceiling), threshold=ceiling,
      final_rate=final_rates)]
  return rows, dict(start=eta, steps=steps, label=label)


def mnist_logreg_task(exptest: ExpTest, args):
  """Table 1's setting (`trainers.train_mnist`), every inner, 5 seeds."""
  data = problems.mnist_on_device(1024 if args.quick else None)
  epochs = 1 if args.quick else 5
  seeds = np.arange(1 if args.quick else MNIST_LOGREG_SEEDS)
  eta = float(optax_exptest.lr_upper_bound(np.asarray(data.x_train)))
  steps = epochs * (data.x_train.shape[0] // 32)
  rows = []
  for inner in _inners(args, ("sgd", "momentum", "adam"), "momentum"):
    runs = trainers.train_mnist(
        "exptest", {"learning_rate": np.full(len(seeds), eta)}, seeds, data,
        eta_max=eta, epochs=epochs,
        make_tx=lambda learning_rate, inner=inner: exptest(learning_rate, inner, steps))
    acc = (100 * runs.accuracy[:, -1]).tolist()
    print("mnist_logreg", inner, acc, flush=True)
    reference = MNIST_LOGREG_REFERENCE[inner]
    rows.append(_row(
        "MNIST logistic regression", INNER_LABELS[inner], "test accuracy (%)", acc,
        "mean", f"mean >= {reference} - {MNIST_LOGREG_TOLERANCE}",
        _at_least(acc, reference - MNIST_LOGREG_TOLERANCE),
        threshold=reference - MNIST_LOGREG_TOLERANCE,
        final_rate=runs.learning_rate[:, -1].tolist()))
  return rows, dict(start=eta, epochs=epochs, steps=steps)


def california_task(exptest: ExpTest, args):
  """Table 3's setting (`trainers.make_california_run`: full batch, 10,000
  steps), momentum, 10 seeds."""
  data = problems.load_california()
  steps = 200 if args.quick else 10_000
  seeds = np.arange(_seeds(args, CALIFORNIA_SEEDS))
  eta = float(optax_exptest.lr_upper_bound(np.asarray(data.x_train).T, loss="mse"))
  make_tx = lambda learning_rate: exptest(learning_rate, "momentum", steps,
                                          sgd_correction=False)
  run = trainers.make_california_run(
      "exptest", make_tx, steps=steps, eval_every=10,
      row_chunks=problems.auto_row_chunks(data.x_train.shape[1], -(-len(seeds) // 2)))
  (_, _, test), _ = trainers.run_arms(
      run, {"learning_rate": np.full(len(seeds), eta, np.float32)},
      np.asarray(seeds, np.uint32), shared=data)
  final = np.asarray(test, float)[:, -1]
  print("california", final.tolist(), flush=True)
  collapsed = int(np.sum(~np.isfinite(final)
                         | (np.abs(final - CALIFORNIA_CONSTANT_PREDICTOR) < 1e-3)))
  mean = float(np.mean(final[:CALIFORNIA_MEAN_SEEDS]))  # Table 3's seeds
  ceiling = CALIFORNIA_REFERENCE + CALIFORNIA_TOLERANCE
  row = _row(
      "California housing", INNER_LABELS["momentum"], "final test MSE", final,
      "mean", f"mean of seeds 0-4 <= {CALIFORNIA_REFERENCE} + {CALIFORNIA_TOLERANCE};"
      f" none of {len(seeds)} collapsed ({CALIFORNIA_CONSTANT_PREDICTOR})",
      bool(np.isfinite(mean) and mean <= ceiling and not collapsed), threshold=ceiling,
      value=mean, collapsed=collapsed)
  return [row], dict(start=eta, steps=steps)


def bad_batches_task(exptest: ExpTest, args):
  """Issue 21's table (`bad_batches.measure`): every inner at 0, 0.1 and 1 %
  corrupt batches."""
  subset, epochs = (1024, 1) if args.quick else (None, 5)
  data = problems.mnist_on_device(subset)
  steps = bad_batches.steps_of(data, epochs)
  eta = float(optax_exptest.lr_upper_bound(np.asarray(data.x_train)))
  fractions = (0.0, 0.01) if args.quick else bad_batches.FRACTIONS
  # Named as `bad_batches.optimizers` names ExpTest's rows (`summarize`
  # reads ExpTest's summary of those).
  chosen = {f"exptest/{inner}": (lambda inner=inner: exptest(eta, inner, steps))
            for inner in _inners(args, ("sgd", "momentum", "adam"), "sgd")}
  measured = bad_batches.measure(
      chosen, data, seeds=range(_seeds(args, args.seeds)),
      fractions=fractions, epochs=epochs, eta_max=eta)
  rows = []
  for name in chosen:
    inner = name.split("/")[1]
    for f in fractions:
      cell = [r for r in measured if r["optimizer"] == name and r["fraction"] == f]
      acc = [r["accuracy"] for r in cell]
      floor = BAD_BATCHES_REFERENCE[(inner, f)] - BAD_BATCHES_TOLERANCE
      rows.append(_row(
          f"Bad batches ({100 * f:g} %)", INNER_LABELS[inner], "test accuracy (%)",
          acc, "mean", f"mean >= {BAD_BATCHES_REFERENCE[(inner, f)]} - {BAD_BATCHES_TOLERANCE}",
          _at_least(acc, floor), threshold=floor,
          skipped=[r["skipped"] for r in cell], cuts=[r["cuts"] for r in cell]))
  return rows, dict(start=eta, steps=steps)


TASKS: dict[str, Callable] = {
    "algoperf_mnist": algoperf_task,
    "nnx_tutorial": nnx_tutorial_task,
    "flax_cnn": flax_cnn_task,
    "char_gpt": char_gpt_task,
    "mnist_logreg": mnist_logreg_task,
    "california": california_task,
    "bad_batches": bad_batches_task,
}


# ----------------------------------------------------------------------------
# The table, the figure and the files.


def _cell(values, metric: str) -> str:
  digits = 0 if metric.startswith("steps") else 4 if "MSE" in metric or "loss" in metric else 2
  return ", ".join("-" if not np.isfinite(v) else f"{v:.{digits}f}" for v in values)


def table(rows: list[dict]) -> str:
  """The scoreboard: one line per row, its values per seed and its result."""
  lines = []
  for r in rows:
    task = r["task"] + ("" if r["size"] == "full" else f" [{r['size']}]")
    values = _cell(r["values"], r["metric"])
    if "final" in r:  # AlgoPerf: the final accuracies beside the steps
      values += " (" + ", ".join(f"{a:.4f}" for a in r["final"]) + ")"
    lines.append([task, r["inner"], r["metric"], values,
                  f"{r['stat']} {_cell([r['value']], r['metric'])}", r["target"],
                  "pass" if r["passed"] else "FAIL"])
  return common.markdown_table(
      ["task", "inner", "metric", "per seed", "median / mean", "target", "result"], lines)


def timings(tasks: dict) -> str:
  return common.markdown_table(
      ["task", "wall time (s)", "process CPU time (s)"],
      [[n, f"{t['wall_seconds']:.0f}", f"{t['cpu_seconds']:.0f}"] for n, t in tasks.items()])


def markdown(out: dict) -> str:
  kwargs = json.dumps(out["exptest_kwargs"]) if out["exptest_kwargs"] else "none (today's defaults)"
  horizon = ("passed (each run's number of updates)" if out["horizon"]["used"] else
             "not passed" + ("" if out["horizon"]["supported"] else
                             " (`exptest` takes no `horizon` yet)"))
  passed = sum(r["passed"] for r in out["rows"])
  lines = [
      f"# Scoreboard `{out['name']}`: ExpTest against issue 28's targets", "",
      f"`python -m benchmarks scoreboard{out['command']}`. ExpTest keyword"
      f" arguments: {kwargs}; `horizon`: {horizon}. {out['seeds']} seeds unless a"
      f" row says (MNIST logistic regression {MNIST_LOGREG_SEEDS}, California"
      f" {CALIFORNIA_SEEDS}); a task marked [...] ran at a reduced size. 'Steps"
      " to 0.97': the first evaluation (every 100 steps) at or above it, '-'"
      " never; 'no regression' targets are one-sided. Measured in"
      f" {out['wall_seconds']:.0f} s wall, {out['cpu_seconds']:.0f} s of process"
      f" CPU time, on {out['cores']} cores shared with other work (load average"
      f" {out['load'][0]:.1f} at the start, {out['load'][1]:.1f} at the end): the"
      " times are as measured, not a benchmark of speed.", "",
      f"**{passed} of {len(out['rows'])} targets met.**", "",
      table(out["rows"]), "",
      f"Not run here: the step-time target (`python -m benchmarks step_time`,"
      f" single run at most {STEP_TIME_MAX_RATIO}).", "",
      "Time per task:", "", timings(out["tasks"]),
  ]
  return "\n".join(lines)


def _panel_task(row: dict) -> str:
  """The figure's panel of a row: its task without the size or fraction."""
  return row["task"].split(" (")[0]


def figure(out: dict, path: pathlib.Path) -> None:
  """One panel per task: each row's values per seed against its target; a
  run that never reached its target is an x at the top of its panel."""
  from benchmarks.lib import plots  # matplotlib: imported when used
  plt = plots.pyplot()
  tasks = list(dict.fromkeys(_panel_task(r) for r in out["rows"]))
  widths = [max(2, sum(_panel_task(r) == t for r in out["rows"])) for t in tasks]
  fig, axes = plt.subplots(1, len(tasks), figsize=(0.75 * sum(widths) + 1.5, 3.6),
                           squeeze=False, gridspec_kw=dict(width_ratios=widths))
  for ax, task in zip(axes[0], tasks):
    rows = [r for r in out["rows"] if _panel_task(r) == task]
    for i, r in enumerate(rows):
      v = np.asarray(r["values"], float)
      color = "tab:green" if r["passed"] else "tab:red"
      ax.plot(np.full(len(v), i), v, "o", color=color, alpha=0.7)
      if r.get("budget") is not None and not np.isfinite(v).all():
        ax.plot(np.full(np.sum(~np.isfinite(v)), i), np.full(np.sum(~np.isfinite(v)),
                r["budget"]), "x", color=color, ms=9)
      value = r["value"] if np.isfinite(r["value"]) else r.get("budget")
      if value is not None:
        ax.plot([i - 0.3, i + 0.3], [value] * 2, "-", color=color, lw=2)
      if r.get("threshold") is not None:
        ax.plot([i - 0.4, i + 0.4], [r["threshold"]] * 2, "k--", lw=1)
    labels = [r["inner"] + ("\n" + r["task"].split("(")[1][:-1]
                            if task == "Bad batches" else "") for r in rows]
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_title(task, fontsize=9)
    ax.set_ylabel(rows[0]["metric"], fontsize=8)
  fig.suptitle(f"Scoreboard `{out['name']}`: per seed (dots; x never reached), median"
               " or mean (bar), target (dashed); green pass, red fail", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def destination(out: pathlib.Path, quick: bool) -> tuple[pathlib.Path, str]:
  """`(folder, name)` of the results: `--out NAME` (one path part) names them
  under `benchmarks/results/`; a longer path is the folder, the name
  `scoreboard` (`_quick` added to a quick run's)."""
  if len(out.parts) == 1 and out.name not in (".", ".."):
    return common.RESULTS, common.result_name(out.name, quick)
  return out, common.result_name("scoreboard", quick)


def _saved(name: str) -> dict:
  """A saved scoreboard: `NAME` under `benchmarks/results/`, or a path."""
  path = pathlib.Path(name)
  path = common.RESULTS / name if len(path.parts) == 1 else path
  return json.loads(path.with_suffix(".json").read_text())


def compare(names: list[str]) -> str:
  """Saved scoreboards side by side: each row's median or mean and result."""
  runs = {name: _saved(name) for name in names}
  keys = list(dict.fromkeys((r["task"], r["inner"]) for o in runs.values() for r in o["rows"]))
  lines = []
  for task, inner in keys:
    cells = []
    for out in runs.values():
      row = next((r for r in out["rows"] if (r["task"], r["inner"]) == (task, inner)), None)
      cells.append("-" if row is None else
                   f"{_cell([row['value']], row['metric'])} {'pass' if row['passed'] else 'FAIL'}")
    lines.append([task, inner, *cells])
  lines.append(["targets met", "", *(
      f"{sum(r['passed'] for r in o['rows'])} / {len(o['rows'])}" for o in runs.values())])
  return common.markdown_table(["task", "inner", *runs], lines)


def main(argv=None):
  parser = common.parser(
      __doc__, seeds=3, out_help="NAME of the results under benchmarks/results/"
      " (default: scoreboard), or a folder (a path with a /)")
  common.add_exptest_kwargs(parser)
  parser.add_argument("--no-horizon", action="store_true",
                      help="never pass `horizon` to exptest, even where it takes one")
  parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
  parser.add_argument("--nnx-seeds", type=int, default=NNX_SEEDS,
                      help="seeds of the NNX tutorial (about 2 CPU-minutes a run)")
  parser.add_argument("--cnn-seeds", type=int, default=CNN_SEEDS,
                      help="seeds of the Flax CNN (about 1.5 CPU-minutes an epoch)")
  parser.add_argument("--cnn-epochs", type=int, default=CNN_EPOCHS,
                      help=f"the Flax CNN's epochs (its targets': {CNN_FULL_EPOCHS})")
  parser.add_argument("--full", action="store_true",
                      help="the CNN tasks at full size: --seeds seeds each, the"
                      f" Flax CNN {CNN_FULL_EPOCHS} epochs (about 40 more CPU-minutes)")
  parser.add_argument("--compare", nargs="+", metavar="NAME",
                      help="print saved scoreboards side by side, run nothing")
  args = parser.parse_args(argv)
  if args.full:
    args.nnx_seeds = args.cnn_seeds = args.seeds
    args.cnn_epochs = CNN_FULL_EPOCHS
  if args.compare:
    text = compare(args.compare)
    print(text)
    return text
  if "horizon" in args.exptest_kwargs:
    raise SystemExit("--exptest-kwargs: leave out 'horizon'; the scoreboard passes"
                     " each run's own number of updates (--no-horizon to pass none)")
  exptest = ExpTest(args.exptest_kwargs, accepts_horizon() and not args.no_horizon)
  folder, name = destination(args.out, args.quick)
  start, cpu_start, load_start = time.perf_counter(), time.process_time(), os.getloadavg()[0]
  rows, tasks = [], {}
  for task in args.tasks:
    tic, cpu = time.perf_counter(), time.process_time()
    task_rows, details = TASKS[task](exptest, args)
    for row in task_rows if args.quick else ():
      row["size"] = "quick"
    rows += task_rows
    tasks[task] = dict(details, wall_seconds=time.perf_counter() - tic,
                       cpu_seconds=time.process_time() - cpu)
    print(f"{task}: {tasks[task]['wall_seconds']:.0f} s wall,"
          f" {tasks[task]['cpu_seconds']:.0f} s CPU", flush=True)
  out = dict(
      name=name, command="".join(f" {a}" for a in (argv if argv is not None else [])),
      exptest_kwargs=args.exptest_kwargs,
      horizon=dict(supported=accepts_horizon(), used=exptest.horizon),
      quick=args.quick, seeds=args.seeds, rows=rows, tasks=tasks,
      wall_seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu_start,
      cores=os.cpu_count(), load=[load_start, os.getloadavg()[0]])
  text = markdown(out)
  path = common.write_results(name, out, text, folder)
  figure(out, folder / f"{name}.png")
  print(text)
  print(f"wrote {path}")
  return out
