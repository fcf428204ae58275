"""ExpTest's cost per step against `optax.sgd`, and its state memory.

Every loop runs its whole training in one `lax.scan`, timed alternately with
the others in one process (medians of paired ratios over the repeats):

* MNIST logistic regression (784 -> 10, batch 32, the real training images):
  - a single run;
  - 8 vmapped arms (seeds), each gathering its own batches;
  - 8 vmapped arms sharing one batch stream, rates spread over three
    decades (1e-3 to 1), what a learning-rate sweep does; also with
    `sgd_correction=False`;
* the Flax CNN of `examples/flax_mnist_cnn.py` (batch 32), a single run;
* the California housing MLP (full batch, `sgd_correction=False`), a single
  run.

In each setting, for scale, SGD with the bare check ExpTest must make every
step (one sum of squares over the gradient, then a select;
`docs/design.md`, 3.5) and, for the single logistic regression,
`optax.apply_if_finite(optax.sgd)`. The report gives ExpTest / SGD and
what ExpTest adds beyond the bare check (the difference of the two
ratios). Last, the state's bytes for windows of 1e2 to 1e6 steps (constant:
the window is block-averaged into `capacity` slots).

Run: `python -m benchmarks step_time [--quick]`.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_exptest
from benchmarks.lib import common
from benchmarks.lib import problems
from benchmarks.lib.problems import cross_entropy as loss_fn, init_linear, load_mnist as load_data
from optax_exptest._src.window import window_size

BATCH = 32
SWEEP_RATES = (1e-3, 1.0)
TARGETS = {
    "logreg single": "<= 1.08",
    "logreg vmap, shared batches": "<= 1.15 (<= 0.05 beyond the check)",
    "cnn single": "<= 1.03",
    "california single": "<= 1.03",
}


def skip_if_not_finite() -> optax.GradientTransformation:
  """The bare per-step check: zero updates unless all gradients are finite."""

  def update_fn(updates, state, params=None):
    del params
    squares = sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(updates))
    finite = jnp.isfinite(squares)
    return jax.tree.map(lambda g: jnp.where(finite, g, 0), updates), state

  return optax.GradientTransformation(lambda _: optax.EmptyState(), update_fn)


def optimizers(checks: bool = False, **exptest_kwargs) -> dict[str, Callable]:
  """`name -> make_tx(eta)`: SGD, ExpTest and the check(s) for scale."""
  out = {
      "sgd": optax.sgd,
      "exptest": lambda eta: optax_exptest.exptest(eta, **exptest_kwargs),
      "sgd_checked": lambda eta: optax.chain(skip_if_not_finite(), optax.sgd(eta)),
  }
  if checks:
    out["sgd_if_finite"] = lambda eta: optax.apply_if_finite(optax.sgd(eta), 10**9)
  return out


def scan_training(make_tx, value_and_grad, params, eta, batches, data):
  """`(params, losses)` of a training loop over `batches` in one `lax.scan`.

  `value_and_grad(params, batch, data)`: `data` is a traced argument of the
  caller's `jit`, so that the dataset is not embedded in the program as a
  constant (as `benchmarks.lib.trainers.compile_arms` explains).
  """
  tx = make_tx(eta)

  def step(carry, batch):
    params, state = carry
    value, grads = value_and_grad(params, batch, data)
    updates, state = tx.update(grads, state, params, value=value)
    return (optax.apply_updates(params, updates), state), value

  (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), batches)
  return params, losses


def logreg_value_and_grad(params, idx, data):
  """Logistic regression's loss and gradient on the rows `idx` of `data = (x, y)`."""
  return jax.value_and_grad(loss_fn)(params, data[0][idx], data[1][idx])


def logreg_settings(x, y, eta, steps, arms):
  """`setting -> {optimizer -> thunk}` for MNIST logistic regression."""

  def own_batches(make_tx, key, rate, data):
    init_key, perm_key = jax.random.split(key)
    order = jax.random.permutation(perm_key, x.shape[0])[: steps * BATCH]
    return scan_training(make_tx, logreg_value_and_grad, init_linear(init_key), rate,
                         order.reshape(steps, BATCH), data)

  # One batch stream for all arms: the gather is shared, as in a sweep.
  order = jax.random.permutation(jax.random.PRNGKey(1), x.shape[0])
  shared = order[: steps * BATCH].reshape(steps, BATCH)

  def shared_batches(make_tx, keys, rates, data):
    def step(carry, idx):
      xb, yb = data[0][idx], data[1][idx]
      def one(params, state, rate):
        value, grads = jax.value_and_grad(loss_fn)(params, xb, yb)
        updates, state = make_tx(rate).update(grads, state, params, value=value)
        return optax.apply_updates(params, updates), state, value
      params, states, values = jax.vmap(one)(*carry, rates)
      return (params, states), values
    params = jax.vmap(init_linear)(keys)
    states = jax.vmap(lambda p, r: make_tx(r).init(p))(params, rates)
    return jax.lax.scan(step, (params, states), shared)

  key = jax.random.PRNGKey(0)
  keys = jax.random.split(key, arms)
  rates = jnp.logspace(*np.log10(SWEEP_RATES), arms)
  settings = {"logreg single": {}, f"logreg vmap {arms} seeds, own batches": {},
              f"logreg vmap {arms} rates, shared batches": {}}
  data = (x, y)
  for name, make_tx in optimizers(checks=True).items():
    single = jax.jit(lambda k, d, m=make_tx: own_batches(m, k, eta, d))
    settings["logreg single"][name] = lambda f=single: f(key, data)
    if name == "sgd_if_finite":
      continue
    seeds = jax.jit(jax.vmap(lambda k, d, m=make_tx: own_batches(m, k, eta, d),
                             in_axes=(0, None)))
    settings[f"logreg vmap {arms} seeds, own batches"][name] = lambda f=seeds: f(keys, data)
  sweep = dict(optimizers(), exptest_no_correction=lambda r: optax_exptest.exptest(
      r, sgd_correction=False))
  for name, make_tx in sweep.items():
    fn = jax.jit(lambda k, r, d, m=make_tx: shared_batches(m, k, r, d))
    settings[f"logreg vmap {arms} rates, shared batches"][name] = (
        lambda f=fn: f(keys, rates, data))
  return settings


def cnn_setting(steps, quick):
  """The Flax CNN of the examples, batch 32, at the data bound."""
  from flax import nnx
  from benchmarks.lib.cnn import CNN
  from benchmarks.lib.cnn import load_mnist_images

  x_train, y_train, _, _ = load_mnist_images(6000 if quick else None)
  eta = optax_exptest.lr_upper_bound(x_train.reshape(len(x_train), -1))
  graphdef, params = nnx.split(CNN(rngs=nnx.Rngs(0)), nnx.Param)
  x, y = jnp.asarray(x_train), jnp.asarray(y_train)

  def value_and_grad(p, idx, d):
    loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(
        nnx.merge(graphdef, p)(d[0][idx]), d[1][idx]).mean()
    return jax.value_and_grad(loss)(p)

  batches = jnp.asarray(
      np.random.default_rng(0).permutation(len(x))[: steps * BATCH].reshape(steps, BATCH))
  return {name: (lambda f=jax.jit(lambda p, d, m=make_tx: scan_training(
      m, value_and_grad, p, eta, batches, d)): f(params, (x, y)))
          for name, make_tx in optimizers().items()}


def california_setting(steps):
  """The California housing MLP, full batch, `sgd_correction=False`."""
  data = problems.load_california()
  eta = optax_exptest.lr_upper_bound(np.asarray(data.x_train).T)
  chunks = problems.auto_row_chunks(data.x_train.shape[1], 1)
  value_and_grad = lambda p, _, d: problems.full_batch_value_and_grad(
      p, d.x_train, d.y_train, chunks)
  params = problems.init_mlp(jax.random.PRNGKey(0))
  return {name: (lambda f=jax.jit(lambda d, m=make_tx: scan_training(
      m, value_and_grad, params, eta, jnp.arange(steps), d)): f(data))
          for name, make_tx in optimizers(sgd_correction=False).items()}


def step_times(settings, steps, repeats):
  """Times every setting's loops (alternately, within the setting)."""
  rows = {}
  for setting, fns in common.progress(settings.items(), desc="settings"):
    times = common.interleaved_timings(fns, repeats)
    n = steps[setting.split()[0]]
    ratio = lambda name: common.paired_ratio(times, name, "sgd")
    rows[setting] = dict(
        steps=n,
        median_us_per_step={k: float(np.median(v)) / n * 1e6 for k, v in times.items()},
        ratios={k: ratio(k) for k in fns if k != "sgd"},
    )
    r = rows[setting]["ratios"]
    if "sgd_checked" in r:
      r["beyond_check"] = r["exptest"]["median"] - r["sgd_checked"]["median"]
  return rows


def state_memory(params, longest):
  """State bytes when the window spans 1e2 ... `longest` steps."""
  rows = []
  l0 = 2.3
  for target in [10**k for k in range(2, int(np.log10(longest)) + 1)]:
    # The rate whose base window is `target` steps for a first loss of l0.
    eta = 2 * np.sqrt(2) * l0 / (np.e * target)
    # All-zero gradients give c_w = 1, so the window is exactly W; the state
    # is the default configuration's (gradient sum and initial parameters).
    tx = optax_exptest.exptest(eta)
    grads = jax.tree.map(jnp.zeros_like, params)

    def step(state, value, tx=tx):
      return tx.update(grads, state, params, value=value)[1], None

    # Feed a whole window of slowly decreasing losses.
    values = l0 + 0.1 * jnp.cos(jnp.arange(target - 1, dtype=jnp.float32))
    state = tx.init(params)
    state, _ = jax.jit(lambda s, v: jax.lax.scan(step, s, v))(state, values)
    nbytes = lambda tree: sum(x.nbytes for x in jax.tree.leaves(tree))
    rows.append(dict(
        window=int(window_size(l0, eta)),
        losses_in_window=int(state.window.losses.count),
        block_size=int(state.window.losses.block_size),
        state_bytes=nbytes(state),
        loss_window_bytes=nbytes(state.window),
        parameter_copies_bytes=nbytes((state.anchor_params, state.correction.displacement)),
    ))
  return rows


def main(argv=None):
  parser = common.parser(__doc__, seeds=None)
  parser.add_argument("--arms", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=11)
  args = parser.parse_args(argv)

  x_train, y_train, _, _ = load_data(subset=6000 if args.quick else None)
  eta = optax_exptest.lr_upper_bound(x_train)
  x, y = jnp.asarray(x_train), jnp.asarray(y_train)
  if args.quick:
    steps = dict(logreg=100, cnn=3, california=5)
    repeats, arms = 2, 2
  else:
    steps = dict(logreg=len(x_train) // BATCH, cnn=20, california=300)
    repeats, arms = args.repeats, args.arms
  settings = logreg_settings(x, y, eta, steps["logreg"], arms)
  settings["cnn single"] = cnn_setting(steps["cnn"], args.quick)
  settings["california single"] = california_setting(steps["california"])
  if args.quick:  # A smoke run: every setting's code, fewer programs to compile.
    settings.pop(f"logreg vmap {arms} seeds, own batches")
    for setting, fns in settings.items():
      keep = ("sgd", "exptest", "exptest_no_correction")
      if setting == "logreg single":
        keep += ("sgd_checked",)
      settings[setting] = {k: v for k, v in fns.items() if k in keep}
  timing = step_times(settings, steps, repeats)
  memory = state_memory(init_linear(jax.random.PRNGKey(0)), 10**3 if args.quick else 10**6)

  rows = []
  for setting, row in timing.items():
    t, r = row["median_us_per_step"], row["ratios"]
    target = TARGETS.get(setting.replace(f" {arms} rates", "").replace(f" {arms} seeds", ""), "")
    check = r.get("sgd_checked", {}).get("median", "-")
    rows.append([setting, t["sgd"], t["exptest"], r["exptest"]["median"],
                 check, r.get("beyond_check", "-"), target])
    if "exptest_no_correction" in r and "sgd_checked" in r:
      rows.append([setting + ", `sgd_correction=False`", t["sgd"],
                   t["exptest_no_correction"], r["exptest_no_correction"]["median"],
                   r["sgd_checked"]["median"],
                   r["exptest_no_correction"]["median"] - r["sgd_checked"]["median"], ""])
    if "sgd_if_finite" in r:
      rows.append([setting + ": `optax.apply_if_finite(sgd)` in the ExpTest column",
                   t["sgd"], t["sgd_if_finite"], r["sgd_if_finite"]["median"], "", "", ""])
  md = [
      "# ExpTest step time and memory",
      "",
      f"Logistic regression: MNIST, batch {BATCH}, {steps['logreg']} steps, rate"
      f" eta_max = {eta:.4f} (the sweep: {arms} rates from {SWEEP_RATES[0]:g} to"
      f" {SWEEP_RATES[1]:g}); CNN: {steps['cnn']} steps of batch {BATCH};"
      f" California: {steps['california']} full-batch steps. Medians of"
      f" {repeats} alternating repeats; ratios are medians of paired ratios.",
      "",
      common.markdown_table(
          ["loop", "SGD (us/step)", "ExpTest (us/step)", "ExpTest / SGD",
           "bare check / SGD", "ExpTest beyond the check", "target"],
          rows,
      ),
      "",
      "State memory (linear 784 -> 10: 7850 parameters; capacity 1024 slots):",
      "",
      common.markdown_table(
          ["window (steps)", "losses held", "block size", "state bytes",
           "loss window bytes", "parameter copies bytes"],
          [[r["window"], r["losses_in_window"], r["block_size"], r["state_bytes"],
            r["loss_window_bytes"], r["parameter_copies_bytes"]] for r in memory],
      ),
  ]
  markdown = "\n".join(md)
  print(markdown)
  name = common.result_name("step_time", args.quick)
  path = common.write_results(name, dict(eta_max=eta, timing=timing, memory=memory),
                              markdown, args.out)
  print(f"wrote {path}")
  return timing


if __name__ == "__main__":
  main()
