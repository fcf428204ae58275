"""The model-based learning-rate bound against the best rate of a grid.

`optax_exptest.lr_upper_bound_from_model` (2 / lambda_max of the loss's
Hessian at the initial parameters, by Lanczos) beside the data bound
`lr_upper_bound(x)` where there is a feature table, and beside the rate of
a log grid of plain SGD that ends best (rates a factor sqrt(2) apart; the
CNN's a factor 2), on four tasks:

- MNIST logistic regression, batch 32, 5 epochs (the paper's Table 1
  recipe, `benchmarks/lib/trainers.py`); test accuracy.
- California housing, the 8-32-32-1 ReLU MLP, full batch
  (`benchmarks/lib/problems.py`); final test MSE after 2000 steps
  (the paper runs 10000: cut for time).
- The Flax nnx CNN of `benchmarks/lib/cnn.py` (as in
  `examples/flax_mnist_cnn.py`), batch 128; test accuracy on 2000 test
  images after one epoch (468 steps; one seed). Its grid goes to 2.56, so
  that it brackets the best rate.
- A bag-of-embeddings classifier on generated token sequences (integer
  inputs, no feature table): embedding 256 x 32, mean over 16 tokens, a
  32-unit ReLU layer, 4 classes; batch 32, 1500 steps; test accuracy
  (3x the seeds of the others: one vmapped program, and a flat top).

The model bound (the library's defaults: the Hessian, 8 Lanczos steps,
`average="eigenvalues"`) is the mean of 4 training batches' own top
eigenvalues (the whole training set, one batch, for California): 32
curvature products (8 for California). Beside it, each batch's bound alone
(one batch is the recommended call; the range shows what it costs in
accuracy), the Gauss-Newton matrix's, and `average="curvature"` (the top
eigenvalue of the 4 batches' mean curvature). Its cost is reported as wall
time (compiled, and with the first call's compilation) in units of one
compiled training step.

Cut to run in minutes on two shared CPU cores: grid seeds (3; 1 for the
CNN), California's steps (2000 of the paper's 10000), the CNN's epochs.
`--quick` is a smoke run of every task in seconds.

Run: `python -m benchmarks curvature_bound [--quick] [--seeds N]`.
"""

import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_exptest
from benchmarks.lib import common

NUM_ITERATIONS = 8
NUM_BATCHES = 4


def _ce(logits, batch):
  return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()


def _timed(fn: Callable[[], Any], repeats: int = 3) -> tuple[Any, float, float]:
  """``fn()``, the first call's seconds and the median of ``repeats`` more."""
  start = time.perf_counter()
  out = jax.block_until_ready(fn())
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return out, first, float(np.median(times))


def _as_list(batches) -> list:
  """A list of batches, or a pytree of them stacked on a leading axis, as a list."""
  if isinstance(batches, list):
    return batches
  count = len(jax.tree.leaves(batches)[0])
  return [jax.tree.map(lambda x, i=i: x[i], batches) for i in range(count)]


def _model_bound(loss_fn, model_fn, params, batches, step_seconds, *,
                 num_iterations=NUM_ITERATIONS, compare=True, repeats=3):
  """The library's bound (its defaults: the Hessian, the mean of each batch's
  top eigenvalue) on all the batches and on each one alone, the
  Gauss-Newton and mean-curvature variants, and the costs of one batch and
  of all."""
  batch_list = _as_list(batches)
  run = lambda b, **kw: optax_exptest.lr_upper_bound_from_model(
      loss_fn, params, b, model_fn=model_fn, num_iterations=num_iterations,
      **kw)
  eta, first, seconds = _timed(lambda: run(batch_list), repeats=repeats)
  one_seconds = seconds if len(batch_list) == 1 else _timed(
      lambda: run(batch_list[:1]), repeats=repeats)[2]
  singles = [float(run([b])) for b in batch_list]
  eta_gn = float(run(batch_list, curvature="gauss_newton")) if compare else None
  eta_mean = (float(run(batch_list, average="curvature")) if compare
              and len(batch_list) > 1 else None)
  return dict(
      model_bound=float(eta), one_batch_bounds=singles,
      gauss_newton_bound=eta_gn, mean_curvature_bound=eta_mean,
      products=num_iterations * len(batch_list),
      bound_seconds=seconds, bound_seconds_with_compile=first,
      one_batch_seconds=one_seconds, step_seconds=step_seconds,
      cost_in_steps=seconds / step_seconds,
      one_batch_cost_in_steps=one_seconds / step_seconds,
      cost_in_steps_with_compile=first / step_seconds,
  )


def _smoke(quick: bool) -> dict:
  """`_model_bound`'s options: a smoke run compiles 3 Lanczos steps and
  skips the variants (the unrolled iteration's compilation is most of its
  time)."""
  return dict(num_iterations=3, compare=False, repeats=1) if quick else {}


def _log_grid(low: float, high: float) -> np.ndarray:
  """Rates from ``low`` to ``high`` a factor sqrt(2) apart: a factor-2 grid
  leaves the best rate uncertain by a factor 2, so the bound's ratio to it
  by as much."""
  return low * 2.0 ** (np.arange(0, round(2 * np.log2(high / low)) + 1) / 2)


def _grid_summary(rates, scores, higher_is_better, tolerance):
  """Best rate of the grid, and the range of rates within ``tolerance``."""
  scores = np.asarray(scores, float)
  clean = np.where(np.isfinite(scores), scores,
                   -np.inf if higher_is_better else np.inf)
  best = int(np.argmax(clean) if higher_is_better else np.argmin(clean))
  if higher_is_better:
    near = clean >= clean[best] - tolerance
  else:
    near = clean <= clean[best] * (1 + tolerance)
  return dict(rates=[float(r) for r in rates], scores=scores.tolist(),
              best_rate=float(rates[best]), best_score=float(scores[best]),
              near_best=[float(np.min(np.asarray(rates)[near])),
                         float(np.max(np.asarray(rates)[near]))])


# ---------------------------------------------------------------------------
# MNIST logistic regression.


def mnist_logreg(quick: bool, seeds: int) -> dict:
  from benchmarks.lib import problems, trainers
  init_linear, loss_fn = problems.init_linear, problems.cross_entropy

  data = problems.mnist_on_device(6000 if quick else None)
  x = np.asarray(data.x_train)
  data_bound = optax_exptest.lr_upper_bound(x)
  params = init_linear(jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  idx = rng.permutation(len(x))[:NUM_BATCHES * 32].reshape(NUM_BATCHES, 32)
  batches = (data.x_train[idx], data.y_train[idx])
  model_fn = lambda p, b: b[0] @ p["w"] + p["b"]

  step = jax.jit(lambda p, xb, yb: jax.tree.map(
      lambda a, g: a - 0.01 * g, p, jax.grad(loss_fn)(p, xb, yb)))
  _, _, step_seconds = _timed(
      lambda: step(params, data.x_train[:32], data.y_train[:32]), repeats=50)
  out = dict(task="MNIST logistic regression", data_bound=data_bound,
             **_model_bound(_ce, model_fn, params, batches, step_seconds,
                            **_smoke(quick)))

  rates = _log_grid(0.001, 2.048)
  epochs = 5
  if quick:
    rates, epochs, seeds = rates[[8, 12]], 1, 1
  runs = trainers.train_mnist(
      "sgd", {"learning_rate": np.repeat(rates, seeds)},
      np.tile(np.arange(seeds), len(rates)), data, eta_max=data_bound,
      epochs=epochs, evals_per_epoch=1)
  acc = 100 * runs.accuracy[:, -1].reshape(len(rates), seeds).mean(1)
  out.update(_grid_summary(rates, acc, True, 0.1), metric="test accuracy (%)",
             training_steps=int(runs.losses.shape[1]), seeds=seeds)
  return out


# ---------------------------------------------------------------------------
# California housing MLP, full batch.


def california_mlp(quick: bool, seeds: int) -> dict:
  from benchmarks.lib import problems as ct
  from benchmarks.lib import trainers

  data = ct.load_california()
  data_bound = optax_exptest.lr_upper_bound(np.asarray(data.x_train).T, "mse")
  params = ct.init_mlp(jax.random.PRNGKey(0))
  model_fn = lambda p, b: ct.predict(p, b[0])
  mse = lambda out, b: jnp.mean((out - b[1]) ** 2)
  batches = [(data.x_train, data.y_train)]

  step = jax.jit(lambda p: jax.tree.map(
      lambda a, g: a - 0.01 * g, p,
      jax.grad(ct.mse)(p, data.x_train, data.y_train)))
  _, _, step_seconds = _timed(lambda: step(params), repeats=20)
  out = dict(task="California housing MLP (full batch)", data_bound=data_bound,
             **_model_bound(mse, model_fn, params, batches, step_seconds,
                            **_smoke(quick)))

  rates = _log_grid(0.01, 1.28)
  steps = 2000
  if quick:
    rates, steps, seeds = rates[[4, 8]], 50, 1
  runs = trainers.train_california("sgd", {"learning_rate": np.repeat(rates, seeds)},
                  np.tile(np.arange(seeds), len(rates)), data,
                  eta_max=data_bound, steps=steps, eval_every=steps // 5)
  final = runs.final_test.reshape(len(rates), seeds)
  # A diverged seed makes the rate's mean infinite.
  mse_mean = np.where(np.isfinite(final).all(1), final.mean(1), np.inf)
  out.update(_grid_summary(rates, mse_mean, False, 0.02),
             metric="final test MSE", training_steps=steps, seeds=seeds)
  return out


# ---------------------------------------------------------------------------
# The Flax nnx CNN.


def flax_cnn(quick: bool, seeds: int) -> dict:
  from flax import nnx
  from benchmarks.lib.cnn import CNN
  from benchmarks.lib.cnn import load_mnist_images as load

  x_train, y_train, x_test, y_test = load(6000 if quick else None)
  x_test, y_test = x_test[:2000], y_test[:2000]
  batch_size = 128
  steps = len(x_train) // batch_size  # One epoch.
  rates = 0.02 * 2.0 ** np.arange(0, 8)  # 0.02 .. 2.56
  num_batches, bound_rows, num_iterations = NUM_BATCHES, batch_size, NUM_ITERATIONS
  if quick:
    rates, steps, x_test, y_test = rates[[1, 3]], 5, x_test[:200], y_test[:200]
    num_batches, bound_rows, num_iterations = 1, 16, 3
  seeds = 1  # One initialisation and data order: the CNN is the slow task.

  graphdef, params = nnx.split(CNN(rngs=nnx.Rngs(0)), nnx.Param)
  model_fn = lambda p, b: nnx.merge(graphdef, p)(b[0])
  loss = lambda p, xb, yb: _ce(model_fn(p, (xb,)), (xb, yb))
  rng = np.random.default_rng(0)
  order = rng.permutation(len(x_train))
  idx = order[:num_batches * bound_rows].reshape(num_batches, bound_rows)
  batches = (jnp.asarray(x_train[idx]), jnp.asarray(y_train[idx]))

  @jax.jit
  def step(p, rate, xb, yb):
    return jax.tree.map(lambda a, g: a - rate * g, p, jax.grad(loss)(p, xb, yb))

  xb, yb = jnp.asarray(x_train[:batch_size]), jnp.asarray(y_train[:batch_size])
  _, _, step_seconds = _timed(lambda: step(params, 0.01, xb, yb), repeats=5)
  out = dict(task="Flax nnx CNN on MNIST (batch 128)",
             data_bound=optax_exptest.lr_upper_bound(
                 x_train.reshape(len(x_train), -1)),
             **_model_bound(_ce, model_fn, params, batches, step_seconds,
                            num_iterations=num_iterations, compare=not quick,
                            repeats=1))

  @jax.jit
  def accuracy(p):
    logits = model_fn(p, (jnp.asarray(x_test),))
    return jnp.mean(jnp.argmax(logits, -1) == jnp.asarray(y_test))

  # One jitted step a call: XLA:CPU runs convolutions inside a scan's loop
  # body tens of times slower (`curvature._lanczos_top_eigenvalue`).
  take = order[:steps * batch_size].reshape(-1, batch_size)
  accs = []
  for rate in rates:
    p = jax.tree.map(jnp.array, params)
    for idx in take:
      p = step(p, jnp.float32(rate), jnp.asarray(x_train[idx]),
               jnp.asarray(y_train[idx]))
    finite = all(bool(jnp.isfinite(a).all()) for a in jax.tree.leaves(p))
    accs.append(100 * float(accuracy(p)) if finite else np.nan)
  out.update(_grid_summary(rates, accs, True, 0.1), metric="test accuracy (%)",
             training_steps=steps, seeds=seeds)
  return out


# ---------------------------------------------------------------------------
# Bag of embeddings on generated token sequences.

VOCAB, LENGTH, CLASSES, DIM, HIDDEN = 256, 16, 4, 32, 32


def token_data(num: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Sequences of a Zipf background; each class boosts 8 keyword tokens.

  A token is a keyword of its sequence's class with probability 0.15, else
  drawn from the background, so a class shows in a sequence's bag of tokens
  but not with certainty.
  """
  rng = np.random.default_rng(seed)
  keywords = np.random.default_rng(1234).choice(
      VOCAB, size=(CLASSES, 8), replace=False)
  zipf = 1.0 / np.arange(1, VOCAB + 1)
  labels = rng.integers(0, CLASSES, size=num)
  background = rng.choice(VOCAB, size=(num, LENGTH), p=zipf / zipf.sum())
  keyword = keywords[labels[:, None], rng.integers(0, 8, size=(num, LENGTH))]
  tokens = np.where(rng.random((num, LENGTH)) < 0.15, keyword, background)
  return tokens.astype(np.int32), labels.astype(np.int32)


def init_bag(key) -> dict:
  """N(0, 1) embeddings (as ``torch.nn.Embedding``), PyTorch-style linears."""
  k1, k2, k3, k4, k5 = jax.random.split(key, 5)
  u = lambda k, shape, fan_in: jax.random.uniform(
      k, shape, minval=-1 / np.sqrt(fan_in), maxval=1 / np.sqrt(fan_in))
  return dict(embed=jax.random.normal(k1, (VOCAB, DIM)),
              w1=u(k2, (DIM, HIDDEN), DIM), b1=u(k3, (HIDDEN,), DIM),
              w2=u(k4, (HIDDEN, CLASSES), HIDDEN),
              b2=u(k5, (CLASSES,), HIDDEN))


def bag_apply(params, batch):
  pooled = params["embed"][batch[0]].mean(axis=1)
  hidden = jax.nn.relu(pooled @ params["w1"] + params["b1"])
  return hidden @ params["w2"] + params["b2"]


def token_bag(quick: bool, seeds: int) -> dict:
  x_train, y_train = token_data(16384, seed=0)
  x_test, y_test = token_data(2048, seed=1)
  batch_size, steps = 32, 1500
  rates = _log_grid(0.01, 20.48)
  seeds = 3 * seeds  # Cheap (one vmapped program); its grid's top is flat.
  if quick:
    rates, steps, seeds = rates[[8, 12]], 50, 1
  loss = lambda p, xb, yb: _ce(bag_apply(p, (xb,)), (xb, yb))
  params0 = init_bag(jax.random.PRNGKey(0))
  idx = np.random.default_rng(0).permutation(len(x_train))[
      :NUM_BATCHES * batch_size].reshape(NUM_BATCHES, batch_size)
  batches = (jnp.asarray(x_train[idx]), jnp.asarray(y_train[idx]))

  def step(p, rate, xb, yb):
    return jax.tree.map(lambda a, g: a - rate * g, p, jax.grad(loss)(p, xb, yb))

  step_jit = jax.jit(step)
  xb, yb = jnp.asarray(x_train[:32]), jnp.asarray(y_train[:32])
  _, _, step_seconds = _timed(lambda: step_jit(params0, 0.01, xb, yb),
                              repeats=50)
  out = dict(task="Bag of embeddings on generated tokens (batch 32)",
             data_bound=None,
             **_model_bound(_ce, bag_apply, params0, batches, step_seconds,
                            **_smoke(quick)))

  xs, ys = jnp.asarray(x_train), jnp.asarray(y_train)

  def run(rate, seed):
    init_key, data_key = jax.random.split(jax.random.PRNGKey(seed))
    p = init_bag(init_key)
    order = jax.random.permutation(data_key, steps * batch_size) % len(x_train)
    body = lambda p, i: (step(p, rate, xs[i], ys[i]), None)
    p, _ = jax.lax.scan(body, p, order.reshape(steps, batch_size))
    logits = bag_apply(p, (jnp.asarray(x_test),))
    return jnp.mean(jnp.argmax(logits, -1) == jnp.asarray(y_test))

  arm_rates = np.repeat(rates, seeds).astype(np.float32)
  arm_seeds = np.tile(np.arange(seeds), len(rates)).astype(np.uint32)
  acc = np.asarray(jax.jit(jax.vmap(run))(arm_rates, arm_seeds))
  acc = 100 * acc.reshape(len(rates), seeds).mean(1)
  out.update(_grid_summary(rates, acc, True, 0.1), metric="test accuracy (%)",
             training_steps=steps, seeds=seeds)
  return out


TASKS = dict(mnist_logreg=mnist_logreg, california_mlp=california_mlp,
             flax_cnn=flax_cnn, token_bag=token_bag)


def _table(results: dict) -> str:
  headers = ["task", "data bound", "model bound", "one batch's (range)",
             "Gauss-Newton", "mean curvature", "best grid rate",
             "model / best", "data / best", "rates within tol. of best",
             "best score", "products (batches x iters)",
             "cost, one batch (steps)", "cost, all (steps)",
             "with compile (steps)"]
  fmt = lambda x: "-" if x is None else f"{x:.4g}"
  rows = []
  for r in results.values():
    data, singles = r["data_bound"], r["one_batch_bounds"]
    rows.append([
        r["task"], fmt(data), fmt(r["model_bound"]),
        f"{min(singles):.4g} .. {max(singles):.4g}",
        fmt(r["gauss_newton_bound"]), fmt(r["mean_curvature_bound"]),
        fmt(r["best_rate"]), f"{r['model_bound'] / r['best_rate']:.2f}",
        "-" if data is None else f"{data / r['best_rate']:.2f}",
        f"{r['near_best'][0]:.3g} .. {r['near_best'][1]:.3g}",
        f"{r['best_score']:.4g} ({r['metric']}, {r['seeds']} seeds)",
        r["products"], f"{r['one_batch_cost_in_steps']:.0f}",
        f"{r['cost_in_steps']:.0f}", f"{r['cost_in_steps_with_compile']:.0f}",
    ])
  return common.markdown_table(headers, rows)


def main(argv=None):
  parser = common.parser(__doc__, seeds=3)
  parser.add_argument("--tasks", nargs="+", choices=list(TASKS),
                      default=list(TASKS), help="tasks to run")
  args = parser.parse_args(argv)
  start = time.perf_counter()
  results = {}
  for name in args.tasks:
    task_start = time.perf_counter()
    results[name] = TASKS[name](args.quick, args.seeds)
    results[name]["seconds"] = time.perf_counter() - task_start
    r = results[name]
    print(f"{name}: data bound {r['data_bound']}, model bound"
          f" {r['model_bound']:.4g} (Gauss-Newton {r['gauss_newton_bound']}), best"
          f" grid rate {r['best_rate']:.4g} ({r['best_score']:.4g}),"
          f" model / best {r['model_bound'] / r['best_rate']:.2f};"
          f" {r['seconds']:.0f} s", flush=True)
  table = _table(results)
  print(table)
  name = common.result_name("curvature_bound", args.quick)
  markdown = "\n\n".join([
      "# The model-based learning-rate bound against a grid of SGD rates",
      "`lr_upper_bound_from_model` with its defaults (the Hessian, 8 Lanczos"
      " steps, the mean of each batch's top eigenvalue; at the initial"
      " parameters) on 4 batches of the training batch size (California:"
      " the one full batch), the range of its value on each batch alone,"
      " and its Gauss-Newton and mean-curvature (`average=\"curvature\"`)"
      " variants, beside `lr_upper_bound(x)` and the best rate of a log grid"
      " of plain SGD (rates a factor sqrt(2) apart; the CNN's a factor 2),"
      " its scores the mean over seeds. 'Rates within tol.': the grid's"
      " rates within 0.1 percentage points of the best accuracy, or 2% of"
      " the best MSE. Cost: the compiled bound's wall time in compiled"
      " training steps of the task, for one batch (the recommended call),"
      " for all, and for all with the first call's compilation."
      f" Measured in {time.perf_counter() - start:.0f} s.",
      table,
  ])
  common.write_results(name, dict(results=results, quick=args.quick),
                       markdown, args.out)
  if not args.quick:
    common.update_summary("curvature_bound", summary_of(results), args.out)
  return results


def summary_of(results: dict) -> dict:
  """Per task: the bounds, the grid's best rate and the model / best ratio."""
  keys = ("data_bound", "model_bound", "one_batch_bounds",
          "mean_curvature_bound", "gauss_newton_bound", "best_rate",
          "near_best", "cost_in_steps", "one_batch_cost_in_steps")
  return {
      task: dict({k: r[k] for k in keys}, model_over_best=r["model_bound"] / r["best_rate"])
      for task, r in results.items()
  }


if __name__ == "__main__":
  main()
