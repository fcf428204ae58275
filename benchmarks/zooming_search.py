"""Search quality: zooming against TPE (Optuna, hyperopt), random and a grid.

Problems (the paper's teacher-student setting, arXiv 2409.09783, and MNIST):

* `teacher_relu`, `teacher_sigmoid`: a one-hidden-layer teacher
  (20 -> 30 -> 1) labels 10,000 Gaussian inputs; a student of the same shape
  is trained by full-batch gradient descent for 100 steps from a random
  initialisation (the pull's key). Reward: `loss_reward(final MSE, Var(y))`,
  the training R^2 clipped to [0, 1].
* `mnist_logreg`: logistic regression 784 -> 10, 100 SGD steps of batch 128
  (the same batches for every pull; the key draws the initialisation).
  Reward: `accuracy_reward` on 2,000 held-out test images.

Every method searches learning rates in `[1e-4, 10] * eta_max`
(`lr_upper_bound` of the training inputs) on a log scale, at budgets of 3, 5,
10 and 20 pulls (a fresh search per budget), over 10 search seeds. Each pull
really trains at the rate asked; the pulls of all runs that can go at the
same time are trained together in one vmapped call (chunks of fixed size,
one compile per problem). Pull `j` of seed `s` gets the same training key in
every method (common random numbers). A pull diverged when its final training
loss is non-finite or above the initial one.

Methods: `ZoomingSearch(horizon=budget, radius_scale=0.1)` one pull at a time
(the paper) and in rounds of 5; classic zooming (`radius_scale=1`); Optuna's
`TPESampler` and hyperopt's `tpe.suggest` (driven ask/tell, as Ray Tune's
`HyperOptSearch` does; `fmin` would block), both with 3 random start-up
trials (their defaults, 10 and 20, would make them random search at these
budgets); log-uniform random search; a log grid (the budget's cell
midpoints). The reference ("fine grid") is the best mean reward over 48
log-spaced rates, 2 keys each.

Run: `python -m benchmarks zooming_search [--quick] [--out DIR]`.
"""

import math
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import optax_exptest
from benchmarks import common
from examples.mnist_demo import init_linear, load_data, loss_fn
from optax_exptest._src.rewards import accuracy_reward, loss_reward
from optax_exptest._src.zooming_search import ZoomingSearch

RANGE = (1e-4, 10.0)  # times eta_max


class Problem(NamedTuple):
  name: str
  description: str
  eta_max: float
  low: float
  high: float
  # (learning_rates[C], seeds[C], pulls[C]) -> (rewards[C], diverged[C]).
  train: Callable[..., tuple[jax.Array, jax.Array]]


def batched(train):
  """Vmaps and jits `train(lr, key)`; pull `j` of seed `s` gets the key
  `fold_in(fold_in(PRNGKey(1234), s), j)` (derived inside: no extra compiles).
  """

  def one(learning_rate, seed, pull):
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(1234), seed), pull)
    return train(learning_rate, key)

  return jax.jit(jax.vmap(one))


def teacher_student(activation: str, n: int, steps: int, seed: int = 0) -> Problem:
  act = dict(relu=jax.nn.relu, sigmoid=jax.nn.sigmoid)[activation]
  d, h = 20, 30

  @jax.jit
  def teacher_data(key):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    x = jax.random.normal(k1, (n, d))
    w1, b1 = jax.random.normal(k2, (d, h)) / np.sqrt(d), 0.1 * jax.random.normal(k3, (h,))
    return x, act(x @ w1 + b1) @ (jax.random.normal(k4, (h,)) / np.sqrt(h))

  x, y = teacher_data(jax.random.PRNGKey(seed))

  def loss(p):
    return jnp.mean((act(x @ p["w1"] + p["b1"]) @ p["w2"] - y) ** 2)

  def train(learning_rate, key):
    ka, kb = jax.random.split(key)
    params = dict(w1=jax.random.normal(ka, (d, h)) / np.sqrt(d), b1=jnp.zeros(h),
                  w2=jax.random.normal(kb, (h,)) / np.sqrt(h))

    def step(p, _):
      value, grads = jax.value_and_grad(loss)(p)
      return jax.tree.map(lambda a, g: a - learning_rate * g, p, grads), value

    params, losses = jax.lax.scan(step, params, None, length=steps)
    final = loss(params)
    diverged = ~(jnp.isfinite(final) & (final <= losses[0]))
    return loss_reward(final, jnp.var(y)), diverged

  eta = optax_exptest.lr_upper_bound(np.asarray(x), loss="mse")
  return Problem(
      f"teacher_{activation}",
      f"teacher-student {d}-{h}-1 {activation}, {n} points, {steps} full-batch GD"
      " steps; reward 1 - MSE / Var(y)",
      eta, RANGE[0] * eta, RANGE[1] * eta, batched(train))


def mnist(subset=None, test=None):
  """`examples.mnist_demo.load_data`, converting only the images it keeps."""
  if subset is None:
    return load_data()
  data = optax_exptest.datasets.load_mnist()
  x_train = data["train_images"][:subset].reshape(-1, 784).astype(np.float32) / 255
  x_test = data["test_images"][:test].reshape(-1, 784).astype(np.float32) / 255
  mean, std = x_train.mean(), x_train.std()
  return ((x_train - mean) / std, data["train_labels"][:subset],
          (x_test - mean) / std, data["test_labels"][:test])


def mnist_logreg(subset, steps: int, batch: int = 128, test: int = 2000) -> Problem:
  x_train, y_train, x_test, y_test = mnist(subset, test)
  xt, yt = jnp.asarray(x_test[:test]), jnp.asarray(y_test[:test])
  order = np.asarray(jax.random.permutation(jax.random.PRNGKey(0), len(x_train)))
  order = np.resize(order, steps * batch)  # wraps around small subsets
  xb = jnp.asarray(x_train[order].reshape(steps, batch, -1))
  yb = jnp.asarray(y_train[order].reshape(steps, batch))

  def train(learning_rate, key):
    def step(p, b):
      value, grads = jax.value_and_grad(loss_fn)(p, *b)
      return jax.tree.map(lambda a, g: a - learning_rate * g, p, grads), value

    params, losses = jax.lax.scan(step, init_linear(key), (xb, yb))
    final = loss_fn(params, xb[-1], yb[-1])
    diverged = ~(jnp.isfinite(final) & (final <= losses[0]))
    return accuracy_reward(xt @ params["w"] + params["b"], yt), diverged

  eta = optax_exptest.lr_upper_bound(x_train[:10000], loss="cross_entropy")
  return Problem(
      "mnist_logreg",
      f"MNIST logistic regression, {steps} SGD steps of batch {batch}; reward"
      f" accuracy on {len(yt)} test images",
      eta, RANGE[0] * eta, RANGE[1] * eta, batched(train))


# Searchers: `ask()` gives the pulls that can run now (empty while waiting
# for rewards or when the budget is spent), `tell(lrs, rewards)`.


class Zooming:

  def __init__(self, low, high, budget, seed, per_round=1, radius_scale=0.1):
    self.search = ZoomingSearch(low, high, scale="log", horizon=max(budget, 2),
                                radius_scale=radius_scale, seed=seed)
    self.budget, self.per_round, self.waiting = budget, per_round, False

  def ask(self):
    left = self.budget - self.search.num_pulls
    if self.waiting or left <= 0:
      return []
    self.waiting = True
    return list(self.search.ask(min(self.per_round, left)))

  def tell(self, lrs, rewards):
    self.search.tell(lrs, rewards)
    self.waiting = False


class OptunaTPE:

  def __init__(self, low, high, budget, seed):
    import optuna  # pylint: disable=g-import-not-at-top
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=3)
    self.study = optuna.create_study(direction="maximize", sampler=sampler)
    self.dist = {"lr": optuna.distributions.FloatDistribution(low, high, log=True)}
    self.budget, self.trial = budget, None

  def ask(self):
    if self.trial is not None or len(self.study.trials) >= self.budget:
      return []
    self.trial = self.study.ask(self.dist)
    return [self.trial.params["lr"]]

  def tell(self, lrs, rewards):
    self.study.tell(self.trial, float(rewards[0]))
    self.trial = None


class HyperoptTPE:

  def __init__(self, low, high, budget, seed):
    import hyperopt  # pylint: disable=g-import-not-at-top
    self.hp = hyperopt
    space = {"lr": hyperopt.hp.loguniform("lr", math.log(low), math.log(high))}
    self.domain = hyperopt.Domain(lambda p: 0.0, space)
    self.trials = hyperopt.Trials()
    self.rng = np.random.default_rng(seed)
    self.budget, self.doc = budget, None

  def ask(self):
    if self.doc is not None or len(self.trials.trials) >= self.budget:
      return []
    ids = self.trials.new_trial_ids(1)
    docs = self.hp.tpe.suggest(ids, self.domain, self.trials,
                               int(self.rng.integers(2**31 - 1)), n_startup_jobs=3)
    self.trials.insert_trial_docs(docs)
    self.trials.refresh()
    self.doc = self.trials.trials[-1]
    return [float(self.doc["misc"]["vals"]["lr"][0])]

  def tell(self, lrs, rewards):
    self.doc["state"] = self.hp.JOB_STATE_DONE
    self.doc["result"] = {"loss": -float(rewards[0]), "status": self.hp.STATUS_OK}
    self.trials.refresh()
    self.doc = None


class Fixed:
  """Random search or a grid: all pulls known up front."""

  def __init__(self, lrs):
    self.lrs = list(lrs)

  def ask(self):
    lrs, self.lrs = self.lrs, []
    return lrs

  def tell(self, lrs, rewards):
    pass


def random_search(low, high, budget, seed):
  u = np.random.default_rng(seed).uniform(size=budget)
  return Fixed(np.exp(np.log(low) + u * np.log(high / low)))


def log_grid(low, high, budget, seed):
  del seed
  u = (np.arange(budget) + 0.5) / budget
  return Fixed(np.exp(np.log(low) + u * np.log(high / low)))


METHODS = {
    "zooming": lambda lo, hi, b, s: Zooming(lo, hi, b, s),
    "zooming, 5 per round": lambda lo, hi, b, s: Zooming(lo, hi, b, s, per_round=5),
    "zooming, radius_scale=1": lambda lo, hi, b, s: Zooming(lo, hi, b, s, radius_scale=1.0),
    "optuna TPE": OptunaTPE,
    "hyperopt TPE": HyperoptTPE,
    "random": random_search,
    "log grid": log_grid,
}


def evaluate(problem, lrs, seeds, pulls, chunk):
  """Trains every (rate, seed, pull), `chunk` at a time (padded: one compile)."""
  rewards, diverged = [], []
  for start in range(0, len(lrs), chunk):
    lr = np.full(chunk, problem.low, np.float32)
    s, j = np.zeros(chunk, np.int32), np.zeros(chunk, np.int32)
    n = min(chunk, len(lrs) - start)
    lr[:n], s[:n], j[:n] = (a[start:start + n] for a in (lrs, seeds, pulls))
    r, d = problem.train(lr, s, j)
    rewards.append(np.asarray(r)[:n])
    diverged.append(np.asarray(d)[:n])
  return np.concatenate(rewards), np.concatenate(diverged)


def run_problem(problem, budgets, seeds, chunk, reference_points, reference_keys):
  """All methods x budgets x seeds in lockstep; returns per-run pull records."""
  runs = {(m, b, s): make(problem.low, problem.high, b, s)
          for m, make in METHODS.items() for b in budgets for s in range(seeds)}
  pulls = {run: [] for run in runs}
  while True:
    batch = []  # (run, lr, pull index)
    for run, searcher in runs.items():
      for i, lr in enumerate(searcher.ask()):
        batch.append((run, float(lr), len(pulls[run]) + i))
    if not batch:
      break
    rewards, diverged = evaluate(
        problem, np.array([b[1] for b in batch]), np.array([b[0][2] for b in batch]),
        np.array([b[2] for b in batch]), chunk)
    for run in dict.fromkeys(b[0] for b in batch):
      idx = [i for i, b in enumerate(batch) if b[0] == run]
      lrs = [batch[i][1] for i in idx]
      runs[run].tell(lrs, rewards[idx])
      pulls[run] += [dict(learning_rate=batch[i][1], reward=float(rewards[i]),
                          diverged=bool(diverged[i])) for i in idx]

  grid = np.geomspace(problem.low, problem.high, reference_points)
  ref_lrs = np.repeat(grid, reference_keys)
  ref_seeds = 10_000 + np.arange(len(ref_lrs)) % reference_keys
  ref_rewards, ref_div = evaluate(problem, ref_lrs, ref_seeds, np.zeros_like(ref_seeds), chunk)
  ref_mean = ref_rewards.reshape(reference_points, reference_keys).mean(axis=1)
  reference = dict(
      learning_rates=grid.tolist(), mean_rewards=ref_mean.tolist(),
      best_learning_rate=float(grid[ref_mean.argmax()]), best_reward=float(ref_mean.max()),
      diverged_fraction=float(ref_div.mean()),
  )
  return pulls, reference


def summarise(pulls, budgets, seeds):
  rows = {}
  for method in METHODS:
    for b in budgets:
      runs = [pulls[method, b, s] for s in range(seeds)]
      best = np.array([max(p["reward"] for p in run) for run in runs])
      div = np.array([np.mean([p["diverged"] for p in run]) for run in runs])
      rows[method, b] = dict(
          method=method, budget=b, best_mean=float(best.mean()), best_sd=float(best.std()),
          best_median=float(np.median(best)), diverged_fraction=float(div.mean()),
          best=best.tolist(),
      )
  return rows


def plot(results, budgets, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top

  problems = list(results)
  fig, axes = plt.subplots(2, len(problems), figsize=(5 * len(problems), 7.5),
                           squeeze=False)
  for col, name in enumerate(problems):
    summary, ref = results[name]["summary"], results[name]["reference"]
    top, bottom = axes[0, col], axes[1, col]
    for i, method in enumerate(METHODS):
      rows = [summary[f"{method} @ {b}"] for b in budgets]
      mean = np.array([r["best_mean"] for r in rows])
      se = np.array([r["best_sd"] for r in rows]) / np.sqrt(len(rows[0]["best"]))
      style = dict(marker="o", color=f"C{i}", lw=2 if method == "zooming" else 1.2,
                   label=method)
      top.errorbar(budgets, mean, yerr=se, capsize=3, **style)
      bottom.plot(budgets, [100 * r["diverged_fraction"] for r in rows], **style)
    top.axhline(ref["best_reward"], color="k", ls="--", lw=1,
                label="fine grid (reference)")
    top.set_title(name)
    top.set_ylabel("best reward found (mean +- s.e.)")
    bottom.set_ylabel("diverged pulls (%)")
    for ax in (top, bottom):
      ax.set_xscale("log")
      ax.set_xticks(budgets, [str(b) for b in budgets])
      ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
      ax.set_xlabel("pulls (budget)")
    low = min(summary[f"{m} @ {budgets[0]}"]["best_mean"] for m in METHODS)
    top.set_ylim(max(0.0, low - 0.1), min(1.0, ref["best_reward"] + 0.05))
  axes[0, 0].legend(fontsize=7, loc="lower right")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv=None):
  parser = common.parser(__doc__, seeds=None)
  parser.add_argument("--seeds", type=int, default=None,
                      help="search seeds (default 10; 2 with --quick)")
  args = parser.parse_args(argv)

  quick = args.quick
  budgets = [3, 5] if quick else [3, 5, 10, 20]
  seeds = args.seeds or (2 if quick else 10)
  if quick:
    problems = [teacher_student("relu", 1000, 10), mnist_logreg(600, 10, batch=32, test=100)]
    chunk, ref_points, ref_keys = 16, 8, 1
  else:
    problems = [teacher_student("relu", 10_000, 100),
                teacher_student("sigmoid", 10_000, 100), mnist_logreg(None, 100)]
    chunk, ref_points, ref_keys = 32, 48, 2

  def diverged(summary, method):
    fractions = [summary[f"{method} @ {b}"]["diverged_fraction"] for b in budgets]
    return f"{100 * np.mean(fractions):.0f}%"

  results = {}
  for problem in problems:
    start = time.perf_counter()
    pulls, reference = run_problem(problem, budgets, seeds, chunk, ref_points, ref_keys)
    summary = summarise(pulls, budgets, seeds)
    results[problem.name] = dict(
        description=problem.description, eta_max=problem.eta_max,
        interval=[problem.low, problem.high], reference=reference,
        summary={f"{m} @ {b}": row for (m, b), row in summary.items()},
        pulls={f"{m} @ {b} @ {s}": p for (m, b, s), p in pulls.items()},
        seconds=time.perf_counter() - start,
    )
    print(f"{problem.name}: {results[problem.name]['seconds']:.0f} s", flush=True)

  md = [
      "# Zooming search against TPE, random search and a grid",
      "",
      f"Best reward found (mean +- sd over {seeds} search seeds) at equal budgets,"
      " and the fraction of diverged pulls over all budgets. Learning rates in"
      f" [{RANGE[0]:g}, {RANGE[1]:g}] x eta_max, log scale. Reference: best mean"
      f" reward over {ref_points} log-spaced rates. See the module docstring of"
      " `benchmarks/zooming_search.py` for the set-up.",
  ]
  for name, res in results.items():
    s, ref = res["summary"], res["reference"]
    md += [
        "", f"## {name}", "", f"{res['description']}; eta_max = {res['eta_max']:.4g};"
        f" reference best {ref['best_reward']:.4f} at {ref['best_learning_rate']:.4g}.", "",
        common.markdown_table(
            ["method"] + [f"{b} pulls" for b in budgets] + ["diverged pulls"],
            [[m] + [f"{s[f'{m} @ {b}']['best_mean']:.4f} +- {s[f'{m} @ {b}']['best_sd']:.4f}"
                    for b in budgets]
             + [diverged(s, m)]
             for m in METHODS],
        ),
    ]
  md += ["", "Mean rank over problems (1 = best mean best-found reward):", ""]
  ranks = {m: [] for m in METHODS}
  for res in results.values():
    for b in budgets:
      order = sorted(METHODS, key=lambda m: -res["summary"][f"{m} @ {b}"]["best_mean"])
      for r, m in enumerate(order):
        ranks[m].append((b, r + 1))
  md.append(common.markdown_table(
      ["method"] + [f"{b} pulls" for b in budgets],
      [[m] + [float(np.mean([r for bb, r in ranks[m] if bb == b])) for b in budgets]
       for m in METHODS]))
  markdown = "\n".join(md)
  print(markdown)
  name = common.result_name("zooming_search", quick)
  path = common.write_results(
      name, dict(budgets=budgets, seeds=seeds, methods=list(METHODS), results=results),
      markdown, out=args.out)
  plot(results, budgets, args.out / f"{name}.png")
  print(f"wrote {path} and {name}.png")
  return path


if __name__ == "__main__":
  main()
