"""Search quality: zooming against fair baselines at small budgets.

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
10 and 20 pulls (a fresh search per budget), over 20 search seeds (10 left
differences of 0.01-0.04 within noise on teacher_relu). Each pull
really trains at the rate asked; the pulls of all runs that can go at the
same time are trained together in one vmapped call (chunks of fixed size,
one compile per problem and fidelity). Common random numbers: a pull's
training key is a function of the search seed, the learning rate (to 9
significant digits), the fidelity and how many times that run has pulled
this rate before, so two methods that train the same rate in the same search
seed get the same reward, and a repeated rate gets a fresh key. (Keying by
the pull's index instead made the same rates give different rewards to
different methods: at 5 pulls on teacher_sigmoid spread zooming and the grid
train the same five rates, and they differed by 0.05 from the keys alone.)
A pull diverged when its final training loss is non-finite or above the
initial one.

Methods, each at its defaults unless said:

* `zooming`: `ZoomingSearch(low, high, scale="log", horizon=budget)`, one
  pull a round; `zooming, 5 a round`: the same, `ask(5)`.
* `classic zooming 0.1`: `variant="classic", radius_scale=0.1`, the paper's
  setting, one pull a round.
* `TPE (3 startup)`, `TPE (default)`: Optuna's `TPESampler` with 3 random
  start-up trials, and with its default 10 (random search below 10 pulls).
* `GP-BO (3 startup)`: Optuna's `GPSampler` (needs torch: `pip install
  -e .[gp]`; left out when it is missing), 3 start-up trials instead of its
  default 10.
* `BLiN`: batched Lipschitz narrowing (Feng, Huang & Wang, NeurIPS 2022,
  arXiv 2110.09722) for a fixed budget: a first batch of `ceil(budget / 4)`
  equal cells played at their centres; cells whose reward is below the
  batch's best by `4 r` (`r` the cell's radius, the paper's elimination
  rule) are dropped, the others halved, and the next batch plays the new
  cells' centres. The paper plays each cell `16 log T / r^2` times, more than
  a whole budget here: one pull per cell per batch is the adaptation. The last
  batch takes the best-ranked cells that fit the budget.
* `successive halving`: synchronous successive halving with rate 3 over
  three rungs (1/9, 1/3 and all of the training steps): `3 budget` random
  log-uniform rates at the first rung, the best third promoted; cost in full
  trainings `<= budget`, each rung one vmapped round. Best found: the
  full-length rewards.
* `random`: log-uniform; `log grid`: the budget's cell midpoints.

The reference ("fine grid") is the best mean reward over 48 log-spaced rates,
2 keys each. Rounds: the sequential steps a method needs (one per `ask` that
returned pulls), i.e. wall time when each round's pulls train as one vmapped
program.

Run: `python -m benchmarks zooming_search [--quick] [--out DIR]`.
"""

import collections
import json
import math
import time
import zlib
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import optax_exptest
from benchmarks.lib import common, problems
from benchmarks.lib.problems import cross_entropy as loss_fn, init_linear, load_mnist as load_data
from optax_exptest._src.rewards import accuracy_reward, loss_reward
from optax_exptest._src.zooming_search import ZoomingSearch

RANGE = (1e-4, 10.0)  # times eta_max


class Problem(NamedTuple):
  name: str
  description: str
  eta_max: float
  low: float
  high: float
  # fidelity in (1, 1/3, 1/9) -> batched train:
  # (learning_rates[C], seeds[C], pulls[C]) -> (rewards[C], diverged[C]).
  train_at: Callable[[float], Callable[..., tuple[jax.Array, jax.Array]]]

  @property
  def train(self):
    return self.train_at(1.0)


def batched(train):
  """Vmaps and jits `train(lr, key)`; a pull of seed `s` and key id `j`
  (`pull_key_id`) gets the key `fold_in(fold_in(PRNGKey(1234), s), j)`
  (derived inside: no extra compiles).
  """

  def one(learning_rate, seed, pull):
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(1234), seed), pull)
    return train(learning_rate, key)

  return jax.jit(jax.vmap(one))


def _rate_and_fidelity(learning_rate: float, fidelity: float) -> str:
  """A pull's rate (to 9 significant digits) and fidelity, as text."""
  return f"{learning_rate:.8e}|{fidelity:.6f}"


def pull_key_id(learning_rate: float, fidelity: float, repeat: int) -> int:
  """The key id of a pull: the same for the same rate, fidelity and repeat."""
  text = f"{_rate_and_fidelity(learning_rate, fidelity)}|{repeat}"
  return zlib.crc32(text.encode()) & 0x7FFFFFFF


def fidelities(make_train, steps):
  """`fidelity -> batched train` with `round(fidelity * steps)` steps, cached."""
  cache = {}

  def train_at(fidelity):
    n = max(1, round(fidelity * steps))
    if n not in cache:
      cache[n] = batched(make_train(n))
    return cache[n]

  return train_at


def teacher_student(activation: str, n: int, steps: int, seed: int = 0) -> Problem:
  act = problems.TEACHER_ACTIVATIONS[activation]
  d, h = 20, 30
  x, y = problems.teacher_student_data(activation, n, d=d, h=h, seed=seed)

  def loss(p):
    return jnp.mean((act(x @ p["w1"] + p["b1"]) @ p["w2"] - y) ** 2)

  def make_train(num_steps):
    def train(learning_rate, key):
      ka, kb = jax.random.split(key)
      params = dict(w1=jax.random.normal(ka, (d, h)) / np.sqrt(d), b1=jnp.zeros(h),
                    w2=jax.random.normal(kb, (h,)) / np.sqrt(h))

      def step(p, _):
        value, grads = jax.value_and_grad(loss)(p)
        return jax.tree.map(lambda a, g: a - learning_rate * g, p, grads), value

      params, losses = jax.lax.scan(step, params, None, length=num_steps)
      final = loss(params)
      diverged = ~(jnp.isfinite(final) & (final <= losses[0]))
      return loss_reward(final, jnp.var(y)), diverged
    return train

  eta = optax_exptest.lr_upper_bound(np.asarray(x), loss="mse")
  return Problem(
      f"teacher_{activation}",
      f"teacher-student {d}-{h}-1 {activation}, {n} points, {steps} full-batch GD"
      " steps; reward 1 - MSE / Var(y)",
      eta, RANGE[0] * eta, RANGE[1] * eta, fidelities(make_train, steps))


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
  xb_all = jnp.asarray(x_train[order].reshape(steps, batch, -1))
  yb_all = jnp.asarray(y_train[order].reshape(steps, batch))

  def make_train(num_steps):
    xb, yb = xb_all[:num_steps], yb_all[:num_steps]

    def train(learning_rate, key):
      def step(p, b):
        value, grads = jax.value_and_grad(loss_fn)(p, *b)
        return jax.tree.map(lambda a, g: a - learning_rate * g, p, grads), value

      params, losses = jax.lax.scan(step, init_linear(key), (xb, yb))
      final = loss_fn(params, xb[-1], yb[-1])
      diverged = ~(jnp.isfinite(final) & (final <= losses[0]))
      return accuracy_reward(xt @ params["w"] + params["b"], yt), diverged
    return train

  eta = optax_exptest.lr_upper_bound(x_train[:10000], loss="cross_entropy")
  return Problem(
      "mnist_logreg",
      f"MNIST logistic regression, {steps} SGD steps of batch {batch}; reward"
      f" accuracy on {len(yt)} test images",
      eta, RANGE[0] * eta, RANGE[1] * eta, fidelities(make_train, steps))


# Searchers: `ask()` gives the pulls that can run now (empty while waiting
# for rewards or when the budget is spent), `tell(lrs, rewards)`; `fidelity`
# is the fraction of the training steps of the pulls just asked (1 but for
# successive halving).


class Zooming:
  fidelity = 1.0

  def __init__(self, low, high, budget, seed, per_round=1, **kwargs):
    self.search = ZoomingSearch(low, high, scale="log", horizon=max(budget, 2),
                                seed=seed, **kwargs)
    self.budget, self.per_round, self.pulls = budget, per_round, None

  def ask(self):
    left = self.budget - self.search.num_pulls
    if self.pulls is not None or left <= 0:
      return []
    self.pulls = self.search.ask_pulls(min(self.per_round, left))
    return [p.learning_rate for p in self.pulls]

  def tell(self, lrs, rewards):
    self.search.tell(self.pulls, rewards)
    self.pulls = None


class OptunaSearch:
  """Optuna's ask/tell, one trial at a time (TPE or GP)."""
  fidelity = 1.0

  def __init__(self, low, high, budget, seed, sampler="tpe", startup=None):
    import optuna  # pylint: disable=g-import-not-at-top
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kwargs = {} if startup is None else dict(n_startup_trials=startup)
    if sampler == "tpe":
      sampler = optuna.samplers.TPESampler(seed=seed, **kwargs)
    else:
      sampler = optuna.samplers.GPSampler(seed=seed, deterministic_objective=False, **kwargs)
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


class BLiN:
  """Batched Lipschitz narrowing for a fixed budget (see the docstring)."""
  fidelity = 1.0

  def __init__(self, low, high, budget, seed):
    del seed  # deterministic
    self.low, self.high, self.left = low, high, budget
    n = max(1, math.ceil(budget / 4))
    self.cells = [((i + 0.5) / n, 0.5 / n) for i in range(n)]  # (centre, radius)
    self.asked = None

  def rate(self, u):
    return float(np.exp(np.log(self.low) + u * np.log(self.high / self.low)))

  def ask(self):
    if self.asked is not None or self.left <= 0 or not self.cells:
      return []
    self.asked = self.cells[:self.left]
    self.left -= len(self.asked)
    return [self.rate(c) for c, _ in self.asked]

  def tell(self, lrs, rewards):
    rewards = np.asarray(rewards, np.float64)
    best = rewards.max()
    kept = [(cell, r) for cell, r in zip(self.asked, rewards) if best - r < 4 * cell[1]]
    kept.sort(key=lambda cr: -cr[1])  # the best cells first, should the budget end
    self.cells = [(c + s * r / 2, r / 2) for (c, r), _ in kept for s in (-1, 1)]
    self.asked = None


class SuccessiveHalving:
  """Synchronous successive halving, rate 3, rungs at 1/9, 1/3 and 1."""

  def __init__(self, low, high, budget, seed):
    rng = np.random.default_rng(seed)
    n0 = 3 * budget
    self.sizes = [n0, n0 // 3, max(1, n0 // 9)]
    self.fractions = [1 / 9, 1 / 3, 1.0]
    u = rng.uniform(size=n0)
    self.next = list(np.exp(np.log(low) + u * np.log(high / low)))
    self.rung, self.waiting = 0, False
    self.fidelity = self.fractions[0]

  def ask(self):
    if self.waiting or self.rung >= len(self.sizes):
      return []
    self.waiting, self.fidelity = True, self.fractions[self.rung]
    return self.next

  def tell(self, lrs, rewards):
    self.rung += 1
    if self.rung < len(self.sizes):
      order = np.argsort(-np.asarray(rewards), kind="stable")[:self.sizes[self.rung]]
      self.next = [lrs[i] for i in order]
    self.waiting = False


class Fixed:
  """Random search or a grid: all pulls known up front."""
  fidelity = 1.0

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


def _has_torch():
  try:
    import torch  # noqa: F401  (only whether it imports)
  except ImportError:
    return False
  return True


def methods(gp: bool = True) -> dict[str, Callable]:
  table = {
      "zooming": lambda lo, hi, b, s: Zooming(lo, hi, b, s),
      "zooming, 5 a round": lambda lo, hi, b, s: Zooming(lo, hi, b, s, per_round=5),
      "classic zooming 0.1": lambda lo, hi, b, s: Zooming(
          lo, hi, b, s, variant="classic", radius_scale=0.1),
      "TPE (3 startup)": lambda lo, hi, b, s: OptunaSearch(lo, hi, b, s, "tpe", 3),
      "TPE (default)": lambda lo, hi, b, s: OptunaSearch(lo, hi, b, s, "tpe"),
      "GP-BO (3 startup)": lambda lo, hi, b, s: OptunaSearch(lo, hi, b, s, "gp", 3),
      "BLiN": BLiN,
      "successive halving": SuccessiveHalving,
      "random": random_search,
      "log grid": log_grid,
  }
  if not gp:
    del table["GP-BO (3 startup)"]
  return table


def evaluate(problem, lrs, seeds, pulls, chunk, fidelity=1.0):
  """Trains every (rate, seed, pull), `chunk` at a time (padded: one compile)."""
  train = problem.train_at(fidelity)
  rewards, diverged = [], []
  for start in range(0, len(lrs), chunk):
    lr = np.full(chunk, problem.low, np.float32)
    s, j = np.zeros(chunk, np.int32), np.zeros(chunk, np.int32)
    n = min(chunk, len(lrs) - start)
    lr[:n], s[:n], j[:n] = (a[start:start + n] for a in (lrs, seeds, pulls))
    r, d = train(lr, s, j)
    rewards.append(np.asarray(r)[:n])
    diverged.append(np.asarray(d)[:n])
  if not rewards:
    return np.zeros(0), np.zeros(0, bool)
  return np.concatenate(rewards), np.concatenate(diverged)


def run_problem(problem, table, budgets, seeds, chunk, reference_points, reference_keys):
  """All methods x budgets x seeds in lockstep; returns per-run pull records.

  Each pull record: rate, reward, diverged, fidelity and the run's round.
  """
  runs = {(m, b, s): make(problem.low, problem.high, b, s)
          for m, make in table.items() for b in budgets for s in range(seeds)}
  pulls = {run: [] for run in runs}
  rounds = dict.fromkeys(runs, 0)
  while True:
    batch = []  # (run, lr, key id, fidelity)
    for run, searcher in runs.items():
      seen = collections.Counter(
          _rate_and_fidelity(p["learning_rate"], p["fidelity"]) for p in pulls[run])
      for lr in searcher.ask():
        lr, fidelity = float(lr), float(searcher.fidelity)
        repeat = seen[_rate_and_fidelity(lr, fidelity)]
        seen[_rate_and_fidelity(lr, fidelity)] += 1
        batch.append((run, lr, pull_key_id(lr, fidelity, repeat), fidelity))
    if not batch:
      break
    rewards, diverged = np.zeros(len(batch)), np.zeros(len(batch), bool)
    for f in sorted({b[3] for b in batch}):
      idx = np.array([i for i, b in enumerate(batch) if b[3] == f])
      rewards[idx], diverged[idx] = evaluate(
          problem, np.array([batch[i][1] for i in idx]),
          np.array([batch[i][0][2] for i in idx]), np.array([batch[i][2] for i in idx]),
          chunk, f)
    for run in dict.fromkeys(b[0] for b in batch):
      idx = [i for i, b in enumerate(batch) if b[0] == run]
      lrs = [batch[i][1] for i in idx]
      runs[run].tell(lrs, rewards[idx])
      pulls[run] += [dict(learning_rate=batch[i][1], reward=float(rewards[i]),
                          diverged=bool(diverged[i]), fidelity=batch[i][3],
                          round=rounds[run]) for i in idx]
      rounds[run] += 1

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


def best_by_round(run_pulls, num_rounds):
  """Best full-length reward found after each round (NaN before the first)."""
  best, out = -math.inf, []
  for r in range(num_rounds):
    full = [p["reward"] for p in run_pulls if p["round"] == r and p["fidelity"] == 1.0]
    best = max([best] + full)
    out.append(best if best > -math.inf else math.nan)
  return out


def summarise(pulls, table, budgets, seeds):
  rows = {}
  for method in table:
    for b in budgets:
      runs = [pulls[method, b, s] for s in range(seeds)]
      best = np.array([max(p["reward"] for p in run if p["fidelity"] == 1.0) for run in runs])
      # Diverged: a fraction of the training cost (pulls weighted by fidelity).
      div = np.array([sum(p["fidelity"] * p["diverged"] for p in run)
                      / sum(p["fidelity"] for p in run) for run in runs])
      cost = np.array([sum(p["fidelity"] for p in run) for run in runs])
      num_rounds = np.array([1 + max(p["round"] for p in run) for run in runs])
      curve = np.array([best_by_round(run, int(num_rounds.max())) for run in runs])
      rows[method, b] = dict(
          method=method, budget=b, best_mean=float(best.mean()), best_sd=float(best.std()),
          best_median=float(np.median(best)), diverged_fraction=float(div.mean()),
          rounds=float(num_rounds.mean()), cost=float(cost.mean()),
          best_by_round=np.nanmean(np.where(np.isnan(curve), 0.0, curve), axis=0).tolist(),
          best=best.tolist(),
      )
  return rows


def plot(results, table, budgets, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top

  problems = list(results)
  fig, axes = plt.subplots(3, len(problems), figsize=(5 * len(problems), 11),
                           squeeze=False)
  for col, name in enumerate(problems):
    summary, ref = results[name]["summary"], results[name]["reference"]
    top, middle, bottom = axes[0, col], axes[1, col], axes[2, col]
    for i, method in enumerate(table):
      rows = [summary[f"{method} @ {b}"] for b in budgets]
      mean = np.array([r["best_mean"] for r in rows])
      se = np.array([r["best_sd"] for r in rows]) / np.sqrt(len(rows[0]["best"]))
      style = dict(marker="o", color=f"C{i}", lw=2.2 if method.startswith("zooming") else 1.1,
                   label=method, ls="-" if i < 10 else "--")
      top.errorbar(budgets, mean, yerr=se, capsize=3, **style)
      curve = rows[-1]["best_by_round"]
      middle.plot(np.arange(1, len(curve) + 1), curve, **style)
      bottom.plot(budgets, [100 * r["diverged_fraction"] for r in rows], **style)
    for ax in (top, middle):
      ax.axhline(ref["best_reward"], color="k", ls="--", lw=1, label="fine grid (reference)")
    top.set_title(name)
    top.set_ylabel("best reward found (mean +- s.e.)")
    middle.set_ylabel(f"best reward after each round, budget {budgets[-1]}")
    middle.set_xlabel("rounds (sequential vmapped calls)")
    middle.set_xlim(0.5, None)
    bottom.set_ylabel("diverged (% of training cost)")
    for ax in (top, bottom):
      ax.set_xscale("log")
      ax.set_xticks(budgets, [str(b) for b in budgets])
      ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
      ax.set_xlabel("pulls (budget, in full trainings)")
    low = min(summary[f"{m} @ {budgets[0]}"]["best_mean"] for m in table)
    top.set_ylim(max(0.0, low - 0.1), min(1.0, ref["best_reward"] + 0.05))
    middle.set_ylim(max(0.0, low - 0.1), min(1.0, ref["best_reward"] + 0.05))
  axes[0, 0].legend(fontsize=7, loc="lower right")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


# Targets of zooming at its defaults: mean best-found >= the log grid's
# (within TOLERANCE) and >= random search's, at these budgets.
TARGET_BUDGETS = (5, 10, 20)
TOLERANCE = 0.002


def targets(results, budgets):
  """Rows (problem, variant, budget, zooming, grid, random, met)."""
  rows = []
  for name, res in results.items():
    s = res["summary"]
    for method in ("zooming", "zooming, 5 a round"):
      for b in (b for b in TARGET_BUDGETS if b in budgets):
        z, g, r = (s[f"{m} @ {b}"]["best_mean"] for m in (method, "log grid", "random"))
        rows.append((name, method, b, z, g, r, z >= g - TOLERANCE and z >= r))
  return rows


def ranks(results, table, budgets):
  out = {m: {b: [] for b in budgets} for m in table}
  for res in results.values():
    for b in budgets:
      order = sorted(table, key=lambda m: -res["summary"][f"{m} @ {b}"]["best_mean"])
      for r, m in enumerate(order):
        out[m][b].append(r + 1)
  return {m: {b: float(np.mean(v)) for b, v in by.items()} for m, by in out.items()}


def account(results, table, budgets):
  """Where zooming (one a round, defaults) wins and where it does not."""
  lines = []
  for name, res in results.items():
    s = res["summary"]
    for b in budgets:
      order = sorted(table, key=lambda m: -s[f"{m} @ {b}"]["best_mean"])
      z = order.index("zooming") + 1
      top = order[0]
      gap = s[f"{top} @ {b}"]["best_mean"] - s[f"zooming @ {b}"]["best_mean"]
      se = s[f"zooming @ {b}"]["best_sd"] / math.sqrt(len(s[f"zooming @ {b}"]["best"]))
      if z > 2:
        lines.append(
            f"* {name}, {b} pulls: zooming ranks {z}; {top} leads by {gap:.4f}"
            f" (zooming's standard error {se:.4f}).")
  if not lines:
    return ["Zooming (one a round) ranks first or second on every problem and budget."]
  return ["Cells where zooming (one a round, defaults) ranks below second:", ""] + lines


def report(results, table, budgets, seeds, ref_points, gp, quick, out):
  """Writes the JSON, Markdown and figure of the problems done so far."""

  def diverged(summary, method):
    fractions = [summary[f"{method} @ {b}"]["diverged_fraction"] for b in budgets]
    return f"{100 * np.mean(fractions):.0f}%"

  md = [
      "# Zooming search against fair baselines",
      "",
      f"Best reward found (mean +- sd over {seeds} search seeds) at equal budgets"
      " (pulls = full trainings), the rounds each method needs at the largest"
      " budget (sequential vmapped calls), and the diverged share of the training"
      f" cost over all budgets. Learning rates in [{RANGE[0]:g}, {RANGE[1]:g}] x"
      f" eta_max, log scale. Reference: best mean reward over {ref_points}"
      " log-spaced rates. Methods and set-up: the module docstring of"
      " `benchmarks/zooming_search.py`."
      + ("" if gp else " GP-BO left out: torch is not installed."),
  ]
  for name, res in results.items():
    s, ref = res["summary"], res["reference"]
    md += [
        "", f"## {name}", "", f"{res['description']}; eta_max = {res['eta_max']:.4g};"
        f" reference best {ref['best_reward']:.4f} at {ref['best_learning_rate']:.4g};"
        f" {res['seconds']:.0f} s.", "",
        common.markdown_table(
            ["method"] + [f"{b} pulls" for b in budgets]
            + [f"rounds @ {budgets[-1]}", "diverged"],
            [[m] + [f"{s[f'{m} @ {b}']['best_mean']:.4f} +- {s[f'{m} @ {b}']['best_sd']:.4f}"
                    for b in budgets]
             + [f"{s[f'{m} @ {budgets[-1]}']['rounds']:.3g}", diverged(s, m)]
             for m in table],
        ),
    ]
  rank = ranks(results, table, budgets)
  md += ["", f"Mean rank over the {len(results)} problem(s) (1 = best mean best-found"
         " reward):", "",
         common.markdown_table(["method"] + [f"{b} pulls" for b in budgets],
                               [[m] + [rank[m][b] for b in budgets] for m in table])]
  rows = targets(results, budgets)
  if rows:
    md += ["", f"Targets: zooming at its defaults >= log grid - {TOLERANCE} and >= random"
           " (mean best-found reward):", "",
           common.markdown_table(
               ["problem", "variant", "pulls", "zooming", "log grid", "random", "met"],
               [[p, m, b, f"{z:.4f}", f"{g:.4f}", f"{r:.4f}", "yes" if ok else "**no**"]
                for p, m, b, z, g, r, ok in rows])]
  md += [""] + account(results, table, budgets)
  markdown = "\n".join(md)
  name = common.result_name("zooming_search", quick)
  path = common.write_results(
      name, dict(budgets=budgets, seeds=seeds, methods=list(table), results=results,
                 ranks={m: {str(b): v for b, v in r.items()} for m, r in rank.items()},
                 targets=[dict(problem=p, method=m, budget=b, zooming=z, grid=g, random=r,
                               met=bool(ok)) for p, m, b, z, g, r, ok in rows]),
      markdown, out=out)
  plot(results, table, budgets, out / f"{name}.png")
  return path, markdown


def main(argv=None):
  parser = common.parser(__doc__, seeds=None)
  parser.add_argument("--seeds", type=int, default=None,
                      help="search seeds (default 20; 2 with --quick)")
  parser.add_argument("--from-json", action="store_true",
                      help="rewrite the Markdown and figure from the saved JSON")
  parser.add_argument("--problems", default=None,
                      help="comma-separated problems to run, in order (default all);"
                      " results are written after each")
  args = parser.parse_args(argv)

  quick = args.quick
  budgets = [3, 5] if quick else [3, 5, 10, 20]
  seeds = args.seeds or (2 if quick else 20)
  gp = _has_torch()
  table = methods(gp=gp)
  if quick:
    builders = {"teacher_relu": lambda: teacher_student("relu", 1000, 10),
                "mnist_logreg": lambda: mnist_logreg(600, 10, batch=32, test=100)}
    chunk, ref_points, ref_keys = 16, 8, 1
  else:
    builders = {"teacher_relu": lambda: teacher_student("relu", 10_000, 100),
                "teacher_sigmoid": lambda: teacher_student("sigmoid", 10_000, 100),
                "mnist_logreg": lambda: mnist_logreg(None, 100)}
    chunk, ref_points, ref_keys = 32, 48, 2
  names = args.problems.split(",") if args.problems else list(builders)
  if args.from_json:
    name = common.result_name("zooming_search", quick)
    saved = json.loads((args.out / f"{name}.json").read_text())
    table = {m: None for m in saved["methods"]}
    path, markdown = report(saved["results"], table, saved["budgets"], saved["seeds"],
                            ref_points, "GP-BO (3 startup)" in table, quick, args.out)
    print(markdown)
    return path

  results = {}
  for problem_name in names:
    problem = builders[problem_name]()
    start = time.perf_counter()
    pulls, reference = run_problem(problem, table, budgets, seeds, chunk, ref_points,
                                   ref_keys)
    summary = summarise(pulls, table, budgets, seeds)
    results[problem.name] = dict(
        description=problem.description, eta_max=problem.eta_max,
        interval=[problem.low, problem.high], reference=reference,
        summary={f"{m} @ {b}": row for (m, b), row in summary.items()},
        pulls={f"{m} @ {b} @ {s}": p for (m, b, s), p in pulls.items()},
        seconds=time.perf_counter() - start,
    )
    print(f"{problem.name}: {results[problem.name]['seconds']:.0f} s", flush=True)
    path, markdown = report(results, table, budgets, seeds, ref_points, gp, quick, args.out)
  print(markdown)
  name = common.result_name("zooming_search", quick)
  print(f"wrote {path} and {name}.png")
  return path


if __name__ == "__main__":
  main()
