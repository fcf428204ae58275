"""Table 2: ExpTest's robustness to alpha and beta on MNIST.

ExpTest over alpha in {0.1, 0.05, 0.01} x beta in {0.05, 0.1, 0.33}, the
paper's MNIST recipe, 5 seeds: all 45 runs in one vmapped program (alpha
and beta are traced, one value per arm).

Run: `python -m benchmarks alpha_beta [--quick] [--seeds N]`.
"""

import itertools
import time

import numpy as np

import optax_exptest
from benchmarks.lib import common, paper, problems, trainers

ALPHAS = (0.1, 0.05, 0.01)
BETAS = (0.05, 0.1, 0.33)


def main(argv=None):
  parser = common.parser(__doc__)
  args = parser.parse_args(argv)
  start = time.perf_counter()
  data = problems.mnist_on_device(subset=3000 if args.quick else None)
  seeds = np.arange(2 if args.quick else args.seeds)
  epochs = 1 if args.quick else 5
  eta = optax_exptest.lr_upper_bound(np.asarray(data.x_train))

  cells = list(itertools.product(ALPHAS, BETAS))
  alpha = np.repeat([a for a, _ in cells], len(seeds))
  beta = np.repeat([b for _, b in cells], len(seeds))
  runs = trainers.train_mnist(
      "exptest", {"alpha": alpha, "beta": beta}, np.tile(seeds, len(cells)), data,
      eta_max=eta, epochs=epochs,
      make_tx=lambda alpha, beta: optax_exptest.exptest(eta, alpha, beta),
  )
  acc = 100 * runs.accuracy[:, -1].reshape(len(cells), len(seeds))
  table = {f"alpha={a},beta={b}": common.mean_std(acc[i])
           for i, (a, b) in enumerate(cells)}
  seconds = time.perf_counter() - start

  rows = []
  for a in ALPHAS:
    rows.append([f"alpha = {a}"] + [
        common.fmt_mean_std(table[f"alpha={a},beta={b}"]) for b in BETAS])
    rows.append([f"  paper: alpha = {a}"] + [
        "{:.2f} ± {:.2f}".format(*paper.ALPHA_BETA[(a, b)]) for b in BETAS])
  markdown = "\n".join([
      "# ExpTest over alpha and beta (Table 2)",
      "",
      f"MNIST logistic regression, test accuracy (%) after {epochs} epochs,"
      f" mean ± std over {len(seeds)} seeds; eta_max = {eta:.5f}.",
      "",
      common.markdown_table([""] + [f"beta = {b}" for b in BETAS], rows),
      "",
      f"Wall time of this experiment: {seconds:.0f} s ({runs.seconds:.0f} s for"
      f" the {len(alpha)} vmapped runs).",
  ])
  print(markdown)
  name = common.result_name("alpha_beta", args.quick)
  common.write_results(name, dict(eta_max=eta, accuracy=table,
                                  wall_seconds=seconds), markdown,
                       args.out)
  if not args.quick:
    common.update_summary("alpha_beta", table)
  return table


if __name__ == "__main__":
  main()
