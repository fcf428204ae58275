"""Table 3: California housing regression, every optimizer.

An 8-32-32-1 ReLU MLP, MSE, full batch, 10000 iterations, 60/20/20 split:
SGD, SGD with momentum, Adam and RMSprop at f * eta_max for f in {1e-4,
1e-3, 1e-2, 0.1, 1}; Adadelta; ExpTest (full batch: no mini-batch
correction); the peers. Test MSE of the final iterate (what the paper's
Table 3 reports) and of the best-validation checkpoint (what its text
describes), and the training curves of the paper's figure 3.

Run: `python -m benchmarks california [--quick] [--seeds N] [--grid-seeds N]`.
"""

import time

import numpy as np

import optax_exptest
from benchmarks.lib import common, optimizers, paper, plots, problems, trainers


def main(argv=None):
  parser = common.parser(__doc__)
  parser.add_argument("--grid-seeds", type=int, default=5,
                      help="seeds of each (optimizer, rate) cell of the grid")
  args = parser.parse_args(argv)
  start = time.perf_counter()

  data = problems.load_california()
  if args.quick:
    names = ["exptest", "sgd", "adadelta"]
    factors, steps, seeds, grid_seeds = [0.01, 1.0], 200, 2, 1
  else:
    names = (optimizers.PAPER + optimizers.PEERS + ["schedule_free_sgd"]
             + optimizers.BEYOND)
    factors, steps = list(paper.CALIFORNIA_FACTORS), 10_000
    seeds, grid_seeds = args.seeds, args.grid_seeds
  eta = optax_exptest.lr_upper_bound(np.asarray(data.x_train).T, loss="mse")
  print(f"eta_max = {eta:.6f}")

  final, best, curves, times = {}, {}, {}, {}
  for name in common.progress(names, desc="california", unit="optimizer"):
    grid = optimizers.OPTIMIZERS[name].uses_grid
    fs = factors if grid else [None]
    n = grid_seeds if grid else seeds
    arm_f = np.repeat([1.0 if f is None else f for f in fs], n)
    runs = trainers.train_california(
        name, {"learning_rate": arm_f * eta}, np.tile(np.arange(n), len(fs)),
        data, eta_max=eta, steps=steps,
    )
    times[name] = runs.seconds
    keys = ["none"] if not grid else [str(f) for f in fs]
    shape = (len(fs), n)
    final[name] = {k: common.mean_std(v) for k, v in
                   zip(keys, runs.final_test.reshape(shape))}
    best[name] = {k: common.mean_std(v) for k, v in
                  zip(keys, runs.best_val_test.reshape(shape))}
    curves[name] = dict(
        factors=fs, losses=runs.losses.reshape(shape + (-1,)),
        decisions=runs.decision.reshape(shape + (-1,)),
    )

  seconds = time.perf_counter() - start
  markdown = report(final, best, eta, factors, seeds, grid_seeds, steps, seconds)
  print(markdown)
  out = args.out
  name = common.result_name("california", args.quick)
  common.write_results(name, dict(
      eta_max=eta, factors=factors, steps=steps, seeds=seeds,
      grid_seeds=grid_seeds, final_iterate_test_mse=final,
      best_validation_test_mse=best, run_seconds=times, wall_seconds=seconds,
  ), markdown, out)
  plots.loss_panels(
      curves, factors, out / f"{name}.png", smooth=1, ylim=(0, 0.5),
      title="California housing: full-batch training MSE",
      ylabel="training MSE",
  )
  if not args.quick:
    # The paper's Table 3 metric (the final iterate's test MSE) first.
    common.update_summary("california", common.expand_rate_free(final, factors))
    common.update_summary("california_best_validation",
                          common.expand_rate_free(best, factors))
  return final


def report(final, best, eta, factors, seeds, grid_seeds, steps, seconds):
  label = lambda name: optimizers.OPTIMIZERS[name].label

  def table(cells):
    rows = []
    for name, by_f in cells.items():
      rows.append([label(name)] + [
          common.fmt_mean_std(by_f.get(str(f), by_f.get("none")), 4) for f in factors
      ])
      if name in paper.CALIFORNIA and cells is final:
        theirs = paper.CALIFORNIA[name]
        rows.append([f"  paper: {label(name)}"] + [
            f"{theirs[f][0]:.4f} ± {theirs[f][1]:.4f}" if f in theirs else "-"
            for f in factors
        ])
    return common.markdown_table(
        ["optimizer"] + [f"{f:g} x eta_max" for f in factors], rows
    )

  return "\n".join([
      "# California housing (Table 3)",
      "",
      f"Test MSE after {steps} full-batch iterations, mean ± std over"
      f" {seeds} seeds ({grid_seeds} per cell of the rate grid); diverged runs"
      f" (non-finite MSE) are counted apart. eta_max = {eta:.4f}.",
      "",
      "## Final iterate (what the paper's Table 3 reports)",
      "",
      table(final),
      "",
      "## Best-validation checkpoint (what the paper's text describes)",
      "",
      table(best),
      "",
      f"Wall time of this experiment: {seconds:.0f} s.",
  ])


if __name__ == "__main__":
  main()
