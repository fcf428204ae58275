"""ExpTest with momentum and Adam inside (`inner=`), and `optax.chain` beside it.

The rows of Tables 1 and 3 for `exptest(eta_max, inner=optax.trace(0.9))`,
`inner=optax.scale_by_adam()`, `inner=optax.trace(0.9, nesterov=True)` and
`inner=optax.scale_by_rms()` with the inner rule of `inner_rules.py`, per
seed (final accuracy / test MSE, final rate in units of eta_max, cuts), and
the composition `optax.chain(optax.trace(0.9), exptest(eta_max))` against
`inner=` on MNIST logistic regression.

The Flax CNN of the examples (`--task cnn`, not part of `all`: about two
minutes a run on two cores) runs ExpTest with momentum and with Adam's
scaling beside Adam's and momentum's rate grids, two rate-free peers and a
hand-made Adam schedule, 3 epochs, batch 128, `--cnn-seeds` seeds.

`--names` runs some of the inners of the MNIST and California tasks; the
others' rows are kept from the task's previous results file when its settings
were the same, each row with the date of its own run (printed under the
table when the rows' dates differ).

The best grid rate beside each row comes from Tables 1 and 3 (`summary.json`,
sections `mnist_logreg`, `california` and `california_best_validation`).

Run: `python -m benchmarks inner_rules [--task mnist|california|chain|chain_california|cnn|all]
[--seeds N] [--epochs E] [--subset M] [--cnn-seeds N] [--names NAME ...]`.
"""

import datetime
import json
import time
import warnings

import numpy as np
import optax

import optax_exptest
from benchmarks.lib import common, optimizers, problems, trainers
from optax_exptest._src.decision import Decision

NAMES = ["exptest_momentum", "exptest_adam", "exptest_nesterov", "exptest_rms"]


def _today() -> str:
  """The UTC date of a row's run, kept with the row (see `--names`)."""
  return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")


def _cuts(decisions):
  """Rate cuts per arm: restarts, divergences and plateaus."""
  return ((decisions == Decision.RESTART) | (decisions == Decision.DIVERGED)
          | (decisions == Decision.PLATEAU)).sum(-1)


def _summary(rates, decisions, eta):
  return dict(final_rate_over_eta_max=(rates[:, -1] / eta).tolist(),
              cuts=_cuts(decisions).tolist())


def _compositions(**exptest_kwargs):
  """`label -> make_tx(learning_rate)`: momentum as `inner=`, and chained
  before ExpTest at the rate given and at `(1 - 0.9)` times it."""
  exptest = lambda rate, **kw: optax_exptest.exptest(rate, **exptest_kwargs, **kw)
  # The chain rows are the composition `init` warns about, measured on purpose.
  warnings.filterwarnings(
      "ignore", message="exptest: a transformation with a per-parameter state")
  return {
      "inner=trace(0.9)": lambda learning_rate: exptest(
          learning_rate, inner=optax.trace(0.9)),
      "chain(trace(0.9), exptest)": lambda learning_rate: optax.chain(
          optax.trace(0.9), exptest(learning_rate)),
      "chain(trace(0.9), exptest((1-0.9) eta_max))": (
          lambda learning_rate: optax.chain(
              optax.trace(0.9), exptest(0.1 * learning_rate))),
  }


def mnist(seeds, epochs, subset, names=NAMES):
  """The ExpTest rows of Table 1, per seed."""
  data = problems.mnist_on_device(subset)
  eta = optax_exptest.lr_upper_bound(np.asarray(data.x_train))
  out = {"eta_max": eta, "epochs": epochs, "subset": subset}
  for name in names:
    runs = trainers.train_mnist(
        name, {"learning_rate": np.full(len(seeds), eta)}, seeds, data,
        eta_max=eta, epochs=epochs,
    )
    acc = 100 * runs.accuracy[:, -1]
    out[name] = dict(accuracy=acc.tolist(), mean_std=common.mean_std(acc),
                     seconds=runs.seconds, date=_today(),
                     **_summary(runs.learning_rate, runs.decision, eta))
    print(name, out[name], flush=True)
  return out


def california(seeds, steps=10_000, names=NAMES):
  """The ExpTest rows of Table 3, per seed."""
  data = problems.load_california()
  eta = optax_exptest.lr_upper_bound(np.asarray(data.x_train).T, loss="mse")
  out = {"eta_max": eta, "steps": steps}
  for name in names:
    runs = trainers.train_california(
        name, {"learning_rate": np.full(len(seeds), eta)}, seeds, data,
        eta_max=eta, steps=steps,
    )
    out[name] = dict(final_test=runs.final_test.tolist(),
                     mean_std=common.mean_std(runs.final_test),
                     best_val_test=runs.best_val_test.tolist(),
                     cuts=_cuts(runs.decision).tolist(), seconds=runs.seconds,
                     date=_today())
    print(name, out[name], flush=True)
  return out


def chain(seeds, epochs, subset):
  """`chain(trace(0.9), exptest(eta_max))` against `exptest(.., inner=)`."""
  data = problems.mnist_on_device(subset)
  eta = optax_exptest.lr_upper_bound(np.asarray(data.x_train))
  out = {"eta_max": eta, "epochs": epochs, "subset": subset}
  for label, make in _compositions().items():
    runs = trainers.train_mnist(
        "exptest", {"learning_rate": np.full(len(seeds), eta)}, seeds, data,
        eta_max=eta, epochs=epochs, make_tx=make,
    )
    acc = 100 * runs.accuracy[:, -1]
    out[label] = dict(accuracy=acc.tolist(), mean_std=common.mean_std(acc),
                      **_summary(runs.learning_rate, runs.decision, eta))
    print(label, out[label], flush=True)
  return out


def chain_california(seeds, steps=10_000):
  """`chain(trace(0.9), exptest)` against `inner=` on California (full batch).

  In the chain the momentum is outside ExpTest: a blow-up fills it with
  huge or non-finite values that a return to the anchor does not clear.
  A run is *frozen* when its last update is a divergence (every step after
  the blow-up diverges again and is cut); *collapsed* when it ends at the
  constant predictor's test MSE (1.3106).
  """
  data = problems.load_california()
  eta = optax_exptest.lr_upper_bound(np.asarray(data.x_train).T, loss="mse")
  out = {"eta_max": eta, "steps": steps}
  for label, make in _compositions(sgd_correction=False).items():
    run = trainers.make_california_run(
        "exptest", make, steps=steps, eval_every=10,
        row_chunks=problems.auto_row_chunks(data.x_train.shape[1], len(seeds)))
    ((_, decisions), _, test), seconds = trainers.run_arms(
        run, {"learning_rate": np.full(len(seeds), eta, np.float32)},
        np.asarray(seeds, np.uint32), shared=data)
    decisions, final = np.asarray(decisions), np.asarray(test, float)[:, -1]
    out[label] = dict(
        final_test=final.tolist(), mean_std=common.mean_std(final),
        frozen=int(np.sum(decisions[:, -1] == Decision.DIVERGED)),
        collapsed=int(np.sum(np.abs(final - 1.3106) < 1e-3)),
        divergences=(decisions == Decision.DIVERGED).sum(-1).tolist(),
        seconds=seconds)
    print(label, out[label], flush=True)
  return out


# The Flax CNN: ExpTest's inner rules beside the grids of the same updates
# and two rate-free peers. Grid factors bracket each update's best rate here.
CNN_CONFIGS = [
    ("exptest_momentum", (None,)),
    ("exptest_adam", (None,)),
    ("adam", (0.01, 0.03, 0.1)),
    ("momentum", (0.1, 0.3, 1.0)),
    ("prodigy", (None,)),
    ("cocob", (None,)),
]
# Not rate-free: Adam at 0.06 eta_max (about 3e-3), divided by 3 after every
# epoch; what three epochs of this CNN can reach with a schedule chosen by hand.
HAND_SCHEDULE = "adam_hand_schedule"


def _cnn_tx(name, factor, eta, steps_per_epoch):
  if name == HAND_SCHEDULE:
    return optax.with_extra_args_support(optax.adam(
        optax.piecewise_constant_schedule(
            0.06 * eta, {k * steps_per_epoch: 1 / 3 for k in (1, 2)})))
  rate = eta if factor is None else factor * eta
  return optimizers.OPTIMIZERS[name].make(rate, eta, False)


def cnn(seeds, epochs=3, quick=False):
  """The Flax CNN of the examples (batch 128), per seed."""
  from benchmarks.lib import cnn as cnn_lib  # Flax: imported when used
  data = cnn_lib.load_mnist_images(1200 if quick else None)
  eta = optax_exptest.lr_upper_bound(data[0].reshape(len(data[0]), -1))
  configs = CNN_CONFIGS + [(HAND_SCHEDULE, (None,))]
  if quick:
    configs, epochs = [("exptest_adam", (None,)), ("adam", (0.03,))], 1
  out = {"eta_max": eta, "epochs": epochs, "batch_size": 128,
         "seeds": [int(s) for s in seeds], "runs": []}
  for name, factors in configs:
    for factor in factors:
      runs = [cnn_lib.train(
          lambda n, name=name, factor=factor: _cnn_tx(name, factor, eta, n),
          data, int(seed), epochs) for seed in seeds]
      final = [r["accuracy"][-1] for r in runs]
      label = ("Adam, 0.06 x eta_max / 3 each epoch (hand-made schedule)"
               if name == HAND_SCHEDULE else optimizers.OPTIMIZERS[name].label)
      record = dict(name=name, label=label, factor=factor, accuracy=final,
                    mean_std=common.mean_std(final),
                    per_epoch=[r["accuracy"] for r in runs],
                    seconds=sum(r["seconds"] for r in runs))
      if name.startswith("exptest"):
        summaries = [optax_exptest.exptest_summary(r["state"]) for r in runs]
        record.update(
            final_rate_over_eta_max=[s["learning_rate"] / eta for s in summaries],
            cuts=[int(s["num_cuts"]) for s in summaries])
      out["runs"].append(record)
      print(label, factor, final, flush=True)
  return out


def _cnn_markdown(c) -> list:
  runs = c["runs"]
  best = {}
  for r in runs:
    if r["factor"] is not None:
      m = r["mean_std"]["mean"]
      if r["name"] not in best or m > best[r["name"]][1]:
        best[r["name"]] = (r["factor"], m)
  lines = [
      f"Flax CNN (the model of `examples/flax_mnist_cnn.py`; {c['epochs']} epochs,"
      f" batch {c['batch_size']}, seeds {', '.join(map(str, c['seeds']))}):"
      f" test accuracy (%) after the last epoch; eta_max ="
      f" lr_upper_bound(pixels) = {c['eta_max']:.4f}. The grids bracket each"
      " update's best rate (best marked *).", "",
      "| optimizer | rate | mean ± std | per seed | per epoch (seed 0) | final rate / eta_max; cuts |",
      "|---|---|---|---|---|---|",
  ]
  for r in runs:
    rate = "-" if r["factor"] is None else f"{r['factor']:g} x eta_max"
    if r["factor"] is not None and best[r["name"]][0] == r["factor"]:
      rate += " *"
    m = r["mean_std"]
    cells = " ".join(f"{v:.2f}" for v in r["accuracy"])
    epochs = " / ".join(f"{v:.2f}" for v in r["per_epoch"][0])
    extra = ""
    if "cuts" in r:
      extra = (", ".join(f"{v:.4f}" for v in r["final_rate_over_eta_max"])
               + f"; {r['cuts']}")
    lines.append(f"| {r['label']} | {rate} | {m['mean']:.2f} ± {m['std']:.2f}"
                 f" | {cells} | {epochs} | {extra} |")
  return lines + [""]


def _row(label, values, digits, grid_best):
  cells = " ".join(f"{v:.{digits}f}" for v in values)
  m = common.mean_std(values)
  return f"| {label} | {m['mean']:.{digits}f} ± {m['std']:.{digits}f} | {cells} | {grid_best} |"


# Each inner's row, and the grid of the same update in Tables 1 and 3.
ROWS = {
    "exptest_momentum": ("ExpTest, inner=trace(0.9)", "momentum", ""),
    "exptest_adam": ("ExpTest, inner=scale_by_adam()", "adam", ""),
    "exptest_nesterov": ("ExpTest, inner=trace(0.9, nesterov=True)", "momentum",
                         " (heavy ball)"),
    "exptest_rms": ("ExpTest, inner=scale_by_rms() (decay 0.9)", "rmsprop",
                    " (decay 0.99)"),
}


def _grid_best(summary, table, name, digits, higher_is_better):
  """`"<label> mean ± std at f x eta_max"`: the best cell of `name`'s grid in
  section `table` of `summary.json`, or "" where it has none."""
  cells = {f: c for f, c in summary.get(table, {}).get(name, {}).items()
           if c["n"] and abs(c["mean"]) < 1e4}
  if not cells:
    return ""
  sign = -1 if higher_is_better else 1
  factor, c = min(cells.items(), key=lambda fc: sign * fc[1]["mean"])
  return (f"{optimizers.OPTIMIZERS[name].label}{{}} {c['mean']:.{digits}f} ±"
          f" {c['std']:.{digits}f} at {float(factor):g} x eta_max")


def _rows(task, key, digits, summary, table, higher_is_better):
  """The rows of the inners the task ran, each beside its grid's best."""
  lines = []
  for name, (label, grid, qualifier) in ROWS.items():
    if name in task:
      best = _grid_best(summary, table, grid, digits, higher_is_better)
      lines.append(_row(label, task[name][key], digits, best.format(qualifier)))
  return lines


def _dates(task) -> list:
  """A line naming each row's run date, when the rows come from several runs."""
  dates = {ROWS[n][0]: task[n].get("date", "undated") for n in ROWS if n in task}
  if len(set(dates.values())) <= 1:
    return []
  return ["Rows from separate runs (`--names`): "
          + "; ".join(f"{label}: {d}" for label, d in dates.items()) + ".", ""]


def markdown(out) -> str:
  """`results/inner_rules.md` from the JSON files of the tasks that ran."""
  load = lambda t: (json.loads((out / f"inner_rules_{t}.json").read_text())
                    if (out / f"inner_rules_{t}.json").exists() else None)
  summary = (json.loads((out / "summary.json").read_text())
             if (out / "summary.json").exists() else {})
  lines = ["# ExpTest with momentum and Adam inside", ""]
  m = load("mnist")
  if m:
    m = m["mnist"]
    lines += [
        f"MNIST logistic regression (Table 1's setting: batch 32, {m['epochs']} epochs),"
        " `exptest(lr_upper_bound(x), inner=...)` with the inner rule of"
        " `docs/design.md` 4a; test accuracy (%) per seed 0..n-1, and the"
        " final rate in units of eta_max.", "",
        "| optimizer | mean ± std | per seed | best grid rate of the same update (Table 1) |",
        "|---|---|---|---|",
        *_rows(m, "accuracy", 2, summary, "mnist_logreg", True),
        "",
        *_dates(m),
        "Final rates / eta_max: momentum "
        + ", ".join(f"{r:.4f}" for r in m["exptest_momentum"]["final_rate_over_eta_max"])
        + "; Adam " + ", ".join(f"{r:.4f}" for r in m["exptest_adam"]["final_rate_over_eta_max"])
        + ".", "",
    ]
  c = load("california")
  if c:
    c = c["california"]
    best_val = _grid_best(summary, "california_best_validation", "adam", 4, False)
    lines += [
        "California housing (Table 3's setting: 8-32-32-1 MLP, full batch,"
        f" {c['steps']} steps), test MSE of the final iterate per seed"
        f" 0..{len(c['exptest_momentum']['final_test']) - 1}; the grids' best"
        " rates are Table 3's.", "",
        "| optimizer | mean ± std | per seed | best grid rate of the same update (Table 3) |",
        "|---|---|---|---|",
        *_rows(c, "final_test", 4, summary, "california", False),
        _row("  (ExpTest, inner=scale_by_adam(), best-validation checkpoint)",
             c["exptest_adam"]["best_val_test"], 4, best_val.format("")),
        "",
        *_dates(c),
    ]
  ch = load("chain")
  if ch:
    ch = ch["chain"]
    lines += [
        f"`optax.chain(optax.trace(0.9), exptest(eta))` against `inner=` on MNIST"
        f" logistic regression ({ch['epochs']} epochs, subset {ch['subset']}):"
        " test accuracy (%) per seed, final rate / eta_max, cuts.", "",
        "| composition | mean ± std | per seed | final rate / eta_max; cuts |",
        "|---|---|---|---|",
    ]
    for label, r in ch.items():
      if isinstance(r, dict):
        rates = ", ".join(f"{x:.4f}" for x in r["final_rate_over_eta_max"])
        lines.append(_row(label, r["accuracy"], 2, f"{rates}; {r['cuts']}"))
    lines.append("")
  cc = load("chain_california")
  if cc:
    cc = cc["chain_california"]
    lines += [
        "The same compositions on California housing (Table 3's setting, full"
        f" batch, {cc['steps']} steps, 10 seeds): final test MSE per seed; frozen:"
        " runs whose every late update diverges (the momentum outside ExpTest"
        " stays non-finite after the blow-up, and each step cuts the rate"
        " again); collapsed: runs at the constant predictor's 1.3106.", "",
        "| composition | mean ± std | per seed | frozen; collapsed |",
        "|---|---|---|---|",
    ]
    for label, r in cc.items():
      if isinstance(r, dict):
        lines.append(_row(label, r["final_test"], 4,
                          f"{r['frozen']}; {r['collapsed']}"))
    lines.append("")
  cnn = load("cnn")
  if cnn:
    lines += _cnn_markdown(cnn["cnn"])
  lines.append("Run: `python -m benchmarks inner_rules --task"
               " mnist|california|chain|chain_california|cnn`.")
  return "\n".join(lines) + "\n"


def summarize(out) -> None:
  """The tables' means into `summary.json` (section `inner_rules`)."""
  summary = {}
  for task in ("mnist", "california", "chain", "chain_california"):
    path = out / f"inner_rules_{task}.json"
    if path.exists():
      record = json.loads(path.read_text())[task]
      summary[task] = {k: v["mean_std"] for k, v in record.items()
                       if isinstance(v, dict) and "mean_std" in v}
  path = out / "inner_rules_cnn.json"
  if path.exists():
    summary["flax_cnn"] = {
        r["label"] + ("" if r["factor"] is None else f" at {r['factor']:g} x eta_max"):
        r["mean_std"] for r in json.loads(path.read_text())["cnn"]["runs"]}
  common.update_summary("inner_rules", summary, out)
  (out / "inner_rules.md").write_text(markdown(out))


def main(argv=None):
  parser = common.parser(__doc__)
  parser.add_argument("--task", default="all",
                      choices=["mnist", "california", "chain", "chain_california",
                               "cnn", "all", "report"])
  parser.add_argument("--epochs", type=int, default=5)
  parser.add_argument("--subset", type=int, default=None)
  parser.add_argument("--california-seeds", type=int, default=10)
  parser.add_argument("--cnn-seeds", type=int, default=2)
  parser.add_argument("--names", nargs="+", default=NAMES, choices=NAMES)
  args = parser.parse_args(argv)
  start = time.perf_counter()
  results = {}
  if args.task == "report":
    summarize(args.out)
    return
  if args.task in ("mnist", "all"):
    results["mnist"] = mnist(np.arange(args.seeds), args.epochs, args.subset,
                               args.names)
  if args.task in ("california", "all"):
    results["california"] = california(np.arange(args.california_seeds),
                                         names=args.names)
  if args.task in ("chain", "all"):
    results["chain"] = chain(np.arange(args.seeds), args.epochs, args.subset)
  if args.task in ("chain_california", "all"):
    results["chain_california"] = chain_california(
        np.arange(args.california_seeds))
  if args.task == "cnn":  # Not in "all": about 2 minutes a run.
    results["cnn"] = cnn(np.arange(args.cnn_seeds), quick=args.quick)
  results["seconds"] = time.perf_counter() - start
  name = common.result_name(f"inner_rules_{args.task}", args.quick)
  args.out.mkdir(parents=True, exist_ok=True)
  previous = args.out / f"{name}.json"
  if args.task in ("mnist", "california") and previous.exists():
    # Rows of the inners not run this time stay from the previous run, if
    # it had the same settings (eta_max, epochs, subset or steps).
    kept = json.loads(previous.read_text())[args.task]
    new = results[args.task]
    settings = lambda r: {k: v for k, v in r.items() if not isinstance(v, dict)}
    if settings(kept) == settings(new):
      results[args.task] = {**kept, **new}
  (args.out / f"{name}.json").write_text(json.dumps(results, indent=1, default=float))
  summarize(args.out)
  print(json.dumps(results, default=float)[:2000])
