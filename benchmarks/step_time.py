"""ExpTest's cost per step against `optax.sgd`, and its state memory.

MNIST logistic regression (784 -> 10, batch 32, the real training images),
the whole training loop in one `lax.scan`; the same loop with `optax.sgd`
and with `exptest`, both at eta_max, timed alternately in one process:

* single run: ExpTest / SGD step time (target <= 1.05);
* for scale, two guards against non-finite gradients over SGD, the check
  ExpTest makes on every step (docs/design.md, 3.5): the bare check (one sum of
  squares over the gradient, then a select), and optax's own
  `optax.apply_if_finite(optax.sgd)`;
* 8 arms (seeds) under `jax.vmap`: vmapped ExpTest / vmapped SGD (<= 1.10);
* the state's bytes for windows of 1e2 to 1e6 steps (constant: the window
  is block-averaged into `capacity` slots).

Run: `python -m benchmarks step_time [--quick]`.
"""


import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_exptest
from benchmarks.lib import common
from benchmarks.lib.problems import cross_entropy as loss_fn, init_linear, load_mnist as load_data
from optax_exptest._src.exptest import window_size

BATCH = 32


def skip_if_not_finite() -> optax.GradientTransformation:
  """The bare per-step check: zero updates unless all gradients are finite."""

  def update_fn(updates, state, params=None):
    del params
    squares = sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(updates))
    finite = jnp.isfinite(squares)
    return jax.tree.map(lambda g: jnp.where(finite, g, 0), updates), state

  return optax.GradientTransformation(lambda _: optax.EmptyState(), update_fn)


def make_run(make_tx, x, y, steps):
  """`run(key) -> (params, losses)`: one training run in a `lax.scan`."""

  def run(key):
    init_key, perm_key = jax.random.split(key)
    params = init_linear(init_key)
    tx = make_tx()
    order = jax.random.permutation(perm_key, x.shape[0])[: steps * BATCH]

    def step(carry, idx):
      params, state = carry
      value, grads = jax.value_and_grad(loss_fn)(params, x[idx], y[idx])
      updates, state = tx.update(grads, state, params, value=value)
      return (optax.apply_updates(params, updates), state), value

    (params, _), losses = jax.lax.scan(
        step, (params, tx.init(params)), order.reshape(steps, BATCH)
    )
    return params, losses

  return run


def step_times(x, y, eta, steps, arms, repeats):
  optimizers = {
      "sgd": lambda: optax.sgd(eta),
      "exptest": lambda: optax_exptest.exptest(eta),
      "sgd_checked": lambda: optax.chain(skip_if_not_finite(), optax.sgd(eta)),
      "sgd_if_finite": lambda: optax.apply_if_finite(optax.sgd(eta), 10**9),
  }
  key = jax.random.PRNGKey(0)
  keys = jax.random.split(key, arms)
  fns = {}
  for name, make_tx in optimizers.items():
    run = make_run(make_tx, x, y, steps)
    single, batched = jax.jit(run), jax.jit(jax.vmap(run))
    fns[name] = lambda single=single: single(key)
    if name in ("sgd", "exptest"):
      fns[f"{name}_vmap{arms}"] = lambda batched=batched: batched(keys)
  times = common.interleaved_timings(fns, repeats)
  per_step = {k: float(np.median(v)) / steps * 1e6 for k, v in times.items()}
  return dict(
      steps=steps, arms=arms, repeats=repeats,
      median_us_per_step=per_step,
      ratio_single=common.paired_ratio(times, "exptest", "sgd"),
      ratio_checked=common.paired_ratio(times, "sgd_checked", "sgd"),
      ratio_if_finite=common.paired_ratio(times, "sgd_if_finite", "sgd"),
      ratio_vmap=common.paired_ratio(times, f"exptest_vmap{arms}", f"sgd_vmap{arms}"),
  )


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
  args = parser.parse_args(argv)

  x_train, y_train, _, _ = load_data(subset=6000 if args.quick else None)
  eta = optax_exptest.lr_upper_bound(x_train)
  x, y = jnp.asarray(x_train), jnp.asarray(y_train)
  steps, repeats = (150, 2) if args.quick else (len(x_train) // BATCH, 21)
  arms = 2 if args.quick else args.arms
  timing = step_times(x, y, eta, steps, arms, repeats)
  memory = state_memory(init_linear(jax.random.PRNGKey(0)), 10**3 if args.quick else 10**6)

  t = timing["median_us_per_step"]
  md = [
      "# ExpTest step time and memory",
      "",
      f"MNIST logistic regression, batch {BATCH}, {steps} steps in one `lax.scan`,"
      f" rate eta_max = {eta:.4f}; medians of {repeats} alternating repeats.",
      "",
      common.markdown_table(
          ["loop", "SGD (us/step)", "ExpTest (us/step)", "ratio (median of pairs)",
           "target"],
          [
              ["single run", t["sgd"], t["exptest"],
               timing["ratio_single"]["median"], "<= 1.05"],
              ["for scale, single run: SGD with the bare finiteness check"
               " in the ExpTest column", t["sgd"], t["sgd_checked"],
               timing["ratio_checked"]["median"], ""],
              ["for scale, single run: `optax.apply_if_finite(sgd)` in the"
               " ExpTest column", t["sgd"], t["sgd_if_finite"],
               timing["ratio_if_finite"]["median"], ""],
              [f"vmap over {arms} seeds", t[f"sgd_vmap{arms}"],
               t[f"exptest_vmap{arms}"], timing["ratio_vmap"]["median"], "<= 1.10"],
          ],
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
