"""Table 1: MNIST logistic regression, every optimizer, and time to 92%.

The paper's recipe (batch 32, 5 epochs, 5 seeds): SGD, SGD with momentum 0.9,
Adam and RMSprop at f * eta_max for f in {0.001, 0.01, 0.1, 1, 10};
Adadelta (lr 1.0); ExpTest; and the peers a user would pick instead
(`benchmarks.lib.optimizers`). Each optimizer's runs (factors x seeds) train in
one program on one core, the seeds one after another and a seed's factors
together on its batches; the programs of two optimizers run side by side on
two cores. Also: steps and seconds to reach 92% test accuracy, and the loss
curves of the paper's figure 1 with ExpTest's decisions marked.

Run: `python -m benchmarks mnist_logreg [--quick] [--seeds N]`.
"""

import functools
import time

import jax
import numpy as np

import optax_exptest
from benchmarks.lib import common, optimizers, paper, plots, problems, trainers

TARGET = 0.92


def steps_to(accuracy: np.ndarray, eval_steps: np.ndarray, target=TARGET):
  """First evaluated step at which each run reaches `target` (nan: never)."""
  hit = accuracy >= target
  first = np.where(hit.any(-1), np.argmax(hit, -1), -1)
  return np.where(first >= 0, eval_steps[first], np.nan)


def factors_of(name, factors):
  """The factors an optimizer runs at (`[None]`: rate-free)."""
  return factors if optimizers.OPTIMIZERS[name].uses_grid else [None]


def compile_optimizer(name, factors, seeds, data, eta, epochs, batch_size, step_steps,
                      device):
  """Compiles all (factor, seed) arms of one optimizer in one program on
  `device`, the seeds one after another (`trainers.compile_mnist`); returns
  `(train, seconds_per_step)` thunks. A rate-free optimizer's program is
  its single runs back to back, so its step time is the program's time per
  step (`seconds_per_step` is None); a grid's arms of one seed take their
  batches together, so its single-run step time has its own program."""
  fs = factors_of(name, factors)
  arm_f = np.repeat([f if f is not None else 1.0 for f in fs], len(seeds))
  arm_seed = np.tile(seeds, len(fs))
  train = trainers.compile_mnist(
      name, {"learning_rate": arm_f * eta}, arm_seed, data, eta_max=eta,
      batch_size=batch_size, epochs=epochs, device=device, evaluate_after=True,
  )
  per_step = None
  if fs[0] is not None:
    per_step = trainers.compile_seconds_per_step(
        name, data, eta_max=eta, learning_rate=eta, steps=step_steps)
  return train, per_step


def run_cost(name, factors, seeds):
  """A program's expected run time, in single-run epochs: a seed's arms
  taking one batch together cost about 2.6 single runs for 5 arms (46 against
  85 us per arm-step, measured on two cores)."""
  return len(seeds) * len(factors_of(name, factors)) ** 0.6


def main(argv=None):
  parser = common.parser(__doc__)
  args = parser.parse_args(argv)
  start = time.perf_counter()
  if args.quick:
    data = problems.mnist_on_device(subset=3000)
    names, factors, seeds, epochs = ["exptest", "sgd"], [0.1, 1.0], np.arange(2), 1
  else:
    data = problems.mnist_on_device()
    names = optimizers.PAPER + optimizers.PEERS + ["schedule_free_sgd"] + optimizers.BEYOND
    factors, seeds, epochs = list(paper.MNIST_FACTORS), np.arange(args.seeds), 5
  eta = optax_exptest.lr_upper_bound(np.asarray(data.x_train))
  print(f"eta_max = {eta:.6f}")
  # Each optimizer is one program on one device (a core). The grids' programs
  # compile first and run while the rest compile (their single-run step
  # times come from their own programs at the end); the rate-free programs,
  # whose step times are their programs' own, run once every compilation is
  # done, one per device at a time, with nothing else beside them.
  run_order = sorted(names, key=lambda n: factors_of(n, factors)[0] is None)  # grids first
  devices = jax.devices()
  device_of = trainers.balance(
      {name: run_cost(name, factors, seeds) for name in names}, len(devices))
  builders = {
      name: functools.partial(compile_optimizer, name, factors, seeds, data, eta,
                              epochs, 32, 200 if args.quick else 1000,
                              devices[device_of[name]])
      for name in run_order
  }
  bar = common.progress(range(len(names)), desc="mnist_logreg", unit="optimizer")
  with trainers.compiling(builders) as compiled:

    def job(name):
      grid = factors_of(name, factors)[0] is not None
      return lambda: compiled.result(name, wait_for_all=not grid)[0]()

    trained = trainers.run_on_devices(
        {name: (device_of[name], job(name)) for name in run_order},
        on_done=lambda name: getattr(bar, "update", lambda n: None)(1))
    trained = {name: trained[name] for name in names}  # the table's order
    compile_seconds = compiled.seconds
    timers = {name: compiled.result(name)[1] for name in names}
  getattr(bar, "close", lambda: None)()
  steps = epochs * (data.x_train.shape[0] // 32)
  per_steps = {
      name: (timer() if timer is not None
             else trained[name].seconds / (len(seeds) * steps))
      for name, timer in timers.items()
  }
  table, curves, reach, timings = {}, {}, {}, {}
  for name, runs in trained.items():
    fs, per_step = factors_of(name, factors), per_steps[name]
    acc = runs.accuracy[:, -1].reshape(len(fs), len(seeds))
    steps = steps_to(runs.accuracy, runs.eval_steps).reshape(len(fs), len(seeds))
    timings[name] = dict(batch_seconds=runs.seconds, seconds_per_step=per_step)
    keys = [str(f) for f in fs] if fs[0] is not None else ["none"]
    table[name] = {k: common.mean_std(100 * acc[i]) for i, k in enumerate(keys)}
    reach[name] = {
        k: dict(
            median_steps=float(np.nanmedian(steps[i])) if np.isfinite(steps[i]).any() else None,
            reached=int(np.isfinite(steps[i]).sum()), runs=len(seeds),
            median_seconds=(float(np.nanmedian(steps[i])) * per_step
                            if np.isfinite(steps[i]).any() else None),
        )
        for i, k in enumerate(keys)
    }
    curves[name] = dict(
        factors=fs, losses=runs.losses.reshape(len(fs), len(seeds), -1),
        decisions=runs.decision.reshape(len(fs), len(seeds), -1),
    )

  seconds = time.perf_counter() - start
  markdown = report(table, reach, eta, factors, len(seeds), seconds, epochs,
                    compile_seconds - start)
  print(markdown)
  out = args.out
  name = common.result_name("mnist_logreg", args.quick)
  common.write_results(name, dict(
      eta_max=eta, factors=factors, seeds=len(seeds), epochs=epochs,
      accuracy=table, time_to_92=reach, timings=timings, wall_seconds=seconds,
      compile_seconds=compile_seconds - start,
  ), markdown, out)
  smooth = 20 if args.quick else 1875
  plots.loss_panels(
      curves, factors, out / f"{name}.png", smooth=smooth,
      ylim=None if args.quick else (None, 0.4),
      title=f"MNIST logistic regression: training loss (moving average of {smooth} steps)",
      ylabel="training loss (cross-entropy)",
  )
  if not args.quick:
    common.update_summary("mnist_logreg", common.expand_rate_free(table, factors))
  return table


def report(table, reach, eta, factors, n, seconds, epochs, compile_seconds):
  def label(name):
    return optimizers.OPTIMIZERS[name].label

  rows = []
  for name, cells in table.items():
    ours = [common.fmt_mean_std(cells.get(str(f), cells.get("none"))) for f in factors]
    rows.append([label(name)] + ours)
    if name in paper.MNIST:
      theirs = paper.MNIST[name]
      rows.append([f"  paper: {label(name)}"] + [
          f"{theirs[f][0]:.2f} ± {theirs[f][1]:.2f}" if f in theirs else "-"
          for f in factors
      ])
  reach_rows = []
  for name, cells in reach.items():
    for key, c in cells.items():
      steps = "never" if c["median_steps"] is None else f"{c['median_steps']:.0f}"
      secs = "-" if c["median_seconds"] is None else f"{c['median_seconds']:.2f}"
      reach_rows.append([label(name), key, steps, secs, f"{c['reached']}/{c['runs']}"])
  return "\n".join([
      "# MNIST logistic regression (Table 1)",
      "",
      f"Test accuracy (%) after {epochs} epochs, batch 32, mean ± std over n = {n} seeds;"
      f" eta_max = {eta:.5f}. Rows 'paper:' are the paper's Table 1.",
      "",
      common.markdown_table(["optimizer"] + [f"{f:g} x eta_max" for f in factors], rows),
      "",
      "## Time to 92% test accuracy",
      "",
      "Median over seeds of the first evaluation (every 1/10 epoch) at or above"
      " 92%, and that many steps at the optimizer's measured single-run step time"
      " (a rate-free optimizer's: its program's time per step, its seeds run one after"
      " another; a grid's: a 1000-step single run at the end).",
      "",
      common.markdown_table(
          ["optimizer", "factor", "steps", "seconds", "runs reaching 92%"], reach_rows
      ),
      "",
      f"Wall time of this experiment: {seconds:.0f} s; the last program was compiled"
      f" {compile_seconds:.0f} s after the start (data loaded, the grids' programs training"
      " meanwhile).",
  ])


if __name__ == "__main__":
  main()
