"""Robustness to the mini-batch size: the paper's figure 2 and its stored runs.

ExpTest on MNIST logistic regression at batch sizes 32, 512 and 2048 (5
epochs, 5 seeds; the authors stored 92.30 / 91.63 / 90.58 %), beside the
optimizers that need no rate. The figure shows ExpTest's training loss over
the first 1000 and 100 iterations, as the paper's figure 2 does.

Run: `python -m benchmarks batch_size [--quick] [--seeds N]`.
"""

import time

import numpy as np

import optax_exptest
from optax_exptest import plotting
from benchmarks.lib import common, optimizers, paper, plots, problems, trainers

BATCH_SIZES = (32, 512, 2048)


def main(argv=None):
  parser = common.parser(__doc__)
  args = parser.parse_args(argv)
  start = time.perf_counter()
  if args.quick:
    data, seeds, epochs = problems.mnist_on_device(subset=6144), np.arange(2), 1
    names, sizes = ["exptest"], (32, 512)
  else:
    data, seeds, epochs = problems.mnist_on_device(), np.arange(args.seeds), 5
    names = ["exptest", "exptest_momentum", "adadelta"] + optimizers.PEERS
    sizes = BATCH_SIZES
  eta = optax_exptest.lr_upper_bound(np.asarray(data.x_train))

  table, first_losses = {}, {}
  for name in common.progress(names, desc="batch_size", unit="optimizer"):
    table[name] = {}
    for b in sizes:
      runs = trainers.train_mnist(
          name, {"learning_rate": np.full(len(seeds), eta)}, seeds, data,
          eta_max=eta, batch_size=b, epochs=epochs,
          evals_per_epoch=max(1, min(10, len(data.x_train) // b // 2)),
      )
      table[name][str(b)] = common.mean_std(100 * runs.accuracy[:, -1])
      if name == "exptest":
        first_losses[b] = (runs.losses[:, :1000], runs.decision[0, :1000])
  seconds = time.perf_counter() - start

  label = lambda n: optimizers.OPTIMIZERS[n].label
  rows = [[label(n)] + [common.fmt_mean_std(table[n][str(b)]) for b in sizes]
          for n in names]
  rows.append(["  paper: ExpTest (stored runs)"]
              + [f"{paper.BATCH_SIZE[b]:.2f}" if b in paper.BATCH_SIZE else "-"
                 for b in sizes])
  markdown = "\n".join([
      "# Mini-batch size (figure 2)",
      "",
      f"MNIST logistic regression, test accuracy (%) after {epochs} epochs,"
      f" mean ± std over {len(seeds)} seeds, every optimizer started without a"
      f" chosen rate (eta_max = {eta:.5f} where one is needed).",
      "",
      common.markdown_table(["optimizer"] + [f"batch {b}" for b in sizes], rows),
      "",
      f"Wall time of this experiment: {seconds:.0f} s.",
  ])
  print(markdown)
  out = args.out
  name = common.result_name("batch_size", args.quick)
  common.write_results(name, dict(eta_max=eta, accuracy=table,
                                  wall_seconds=seconds), markdown, out)
  plot(first_losses, out / f"{name}.png")
  if not args.quick:
    common.update_summary("batch_size", table)
  return table


def plot(first_losses, path):
  plt = plots.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for ax, horizon in zip(axes, (1000, 100)):
    seen = set()
    for i, (b, (losses, decisions)) in enumerate(sorted(first_losses.items())):
      mean = losses[:, :horizon].mean(0)
      ax.plot(np.arange(1, len(mean) + 1), mean, color=f"C{i}", lw=1,
              label=f"batch {b}")
      plotting.mark_decisions(ax, decisions[:horizon], seen=seen,
                              label_prefix=plots.LABEL_PREFIX)
    ax.set_title(f"ExpTest, first {horizon} iterations (mean of seeds)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


if __name__ == "__main__":
  main()
