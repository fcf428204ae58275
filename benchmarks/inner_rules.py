"""ExpTest with momentum and Adam inside (`inner=`), and `optax.chain` beside it.

The rows of Tables 1 and 3 for `exptest(eta_max, inner=optax.trace(0.9))` and
`inner=optax.scale_by_adam()` with the inner rule of `inner_rules.py`, per
seed (final accuracy / test MSE, final rate in units of eta_max, cuts), and
the composition `optax.chain(optax.trace(0.9), exptest(eta_max))` against
`inner=` on MNIST logistic regression.

Run: `python -m benchmarks inner_rules [--task mnist|california|chain|all]
[--seeds N] [--epochs E] [--subset M]`.
"""

import json
import time

import numpy as np
import optax

import optax_exptest
from benchmarks import california_training, common, mnist_training
from optax_exptest._src.decision import Decision

NAMES = ["exptest_momentum", "exptest_adam"]


def _summary(rates, decisions, eta):
  cuts = ((decisions == Decision.RESTART) | (decisions == Decision.DIVERGED)
          | (decisions == Decision.PLATEAU)).sum(-1)
  return dict(final_rate_over_eta_max=(rates[:, -1] / eta).tolist(),
              cuts=cuts.tolist())


def mnist(seeds, epochs, subset):
  """The ExpTest rows of Table 1, per seed."""
  data = mnist_training.load(subset=subset)
  eta = optax_exptest.lr_upper_bound(np.asarray(data.x_train))
  out = {"eta_max": eta, "epochs": epochs, "subset": subset}
  for name in NAMES:
    runs = mnist_training.train(
        name, {"learning_rate": np.full(len(seeds), eta)}, seeds, data,
        eta_max=eta, epochs=epochs,
    )
    acc = 100 * runs.accuracy[:, -1]
    out[name] = dict(accuracy=acc.tolist(), mean_std=common.mean_std(acc),
                     seconds=runs.seconds,
                     **_summary(runs.learning_rate, runs.decision, eta))
    print(name, out[name], flush=True)
  return out


def california(seeds, steps=10_000):
  """The ExpTest rows of Table 3, per seed."""
  data = california_training.load()
  eta = optax_exptest.lr_upper_bound(np.asarray(data.x_train).T, loss="mse")
  out = {"eta_max": eta, "steps": steps}
  for name in NAMES:
    runs = california_training.train(
        name, {"learning_rate": np.full(len(seeds), eta)}, seeds, data,
        eta_max=eta, steps=steps,
    )
    decisions = runs.decision
    cuts = ((decisions == Decision.RESTART) | (decisions == Decision.DIVERGED)
            | (decisions == Decision.PLATEAU)).sum(-1)
    out[name] = dict(final_test=runs.final_test.tolist(),
                     mean_std=common.mean_std(runs.final_test),
                     best_val_test=runs.best_val_test.tolist(),
                     cuts=cuts.tolist(), seconds=runs.seconds)
    print(name, out[name], flush=True)
  return out


def chain(seeds, epochs, subset):
  """`chain(trace(0.9), exptest(eta_max))` against `exptest(.., inner=)`."""
  data = mnist_training.load(subset=subset)
  eta = optax_exptest.lr_upper_bound(np.asarray(data.x_train))
  makers = {
      "inner=trace(0.9)": lambda learning_rate: optax_exptest.exptest(
          learning_rate, inner=optax.trace(0.9)),
      "chain(trace(0.9), exptest)": lambda learning_rate: optax.chain(
          optax.trace(0.9), optax_exptest.exptest(learning_rate)),
      "chain(trace(0.9), exptest((1-0.9) eta_max))": (
          lambda learning_rate: optax.chain(
              optax.trace(0.9), optax_exptest.exptest(0.1 * learning_rate))),
  }
  out = {"eta_max": eta, "epochs": epochs, "subset": subset}
  for label, make in makers.items():
    runs = mnist_training.train(
        "exptest", {"learning_rate": np.full(len(seeds), eta)}, seeds, data,
        eta_max=eta, epochs=epochs, make_tx=make,
    )
    acc = 100 * runs.accuracy[:, -1]
    out[label] = dict(accuracy=acc.tolist(), mean_std=common.mean_std(acc),
                      **_summary(runs.learning_rate, runs.decision, eta))
    print(label, out[label], flush=True)
  return out


def main(argv=None):
  parser = common.parser(__doc__)
  parser.add_argument("--task", default="all",
                      choices=["mnist", "california", "chain", "all"])
  parser.add_argument("--epochs", type=int, default=5)
  parser.add_argument("--subset", type=int, default=None)
  parser.add_argument("--california-seeds", type=int, default=10)
  args = parser.parse_args(argv)
  start = time.perf_counter()
  results = {}
  if args.task in ("mnist", "all"):
    results["mnist"] = mnist(np.arange(args.seeds), args.epochs, args.subset)
  if args.task in ("california", "all"):
    results["california"] = california(np.arange(args.california_seeds))
  if args.task in ("chain", "all"):
    results["chain"] = chain(np.arange(args.seeds), args.epochs, args.subset)
  results["seconds"] = time.perf_counter() - start
  name = common.result_name(f"inner_rules_{args.task}", args.quick)
  args.out.mkdir(parents=True, exist_ok=True)
  (args.out / f"{name}.json").write_text(json.dumps(results, indent=1, default=float))
  print(json.dumps(results, default=float)[:2000])
