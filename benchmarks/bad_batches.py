"""Corrupt batches: a bad batch must cost one step, not the run.

MNIST logistic regression (784 -> 10, batch 32, 5 epochs), started at
`lr_upper_bound(x_train)`, with a fraction of the training steps given a
corrupt batch, in equal parts: a NaN pixel, the batch's images scaled by
1e4 (a record decoded wrongly), or its labels scrambled. Each row is one
optimizer at one fraction, over the seeds (initialisation, data order and
the corrupt steps all follow the seed); the clean run (fraction 0) is the
reference:

* ExpTest as a user writes it, `inner` None, `optax.trace(0.9)` or
  `optax.scale_by_adam()`: faults are skipped, `divergence_patience=3`
  faults in a row confirm a divergence;
* the same with `divergence_patience=1, anchor="init"`: every fault is a
  divergence that returns to the initial parameters (the behaviour before
  faults were skipped);
* `optax.apply_if_finite(optax.sgd(eta_max), max_consecutive_errors=5)`,
  optax's answer for non-finite steps.

Reported: test accuracy, its change from the clean run, the rate cuts and
resets, the skipped steps, the final rate over `eta_max`, and whether the
final parameters are finite.

Run: `python -m benchmarks bad_batches [--quick] [--seeds N]`.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_exptest
from benchmarks.lib import common
from benchmarks.lib import problems

BATCH = 32
FRACTIONS = (0.0, 0.001, 0.01)
NAN_PIXEL, SCALED, SCRAMBLED = 1, 2, 3
INNERS: dict[str, Callable] = {
    "none": lambda: None,
    "momentum": lambda: optax.trace(0.9),
    "adam": optax.scale_by_adam,
}


def optimizers(eta_max: float) -> dict[str, Callable[[], optax.GradientTransformation]]:
  """The rows' optimizers, by name."""
  rows = {}
  for inner, make in INNERS.items():
    rows[f"exptest/{inner}"] = lambda make=make: optax_exptest.exptest(
        eta_max, inner=make())
    rows[f"exptest/{inner}, every fault a divergence"] = (
        lambda make=make: optax_exptest.exptest(
            eta_max, inner=make(), divergence_patience=1, anchor="init"))
  rows["apply_if_finite(sgd)"] = lambda: optax.with_extra_args_support(
      optax.apply_if_finite(optax.sgd(eta_max), max_consecutive_errors=5))
  return rows


def corrupt(kind, x, y, key):
  """The batch `(x, y)` as a corruption of `kind` leaves it."""
  x = jnp.where(kind == NAN_PIXEL, x.at[0, 0].set(jnp.nan), x)
  x = jnp.where(kind == SCALED, 1e4 * x, x)
  y = jnp.where(kind == SCRAMBLED, jax.random.permutation(key, y), y)
  return x, y


def corruptions(seed: int, steps: int, fraction: float) -> np.ndarray:
  """Per step, 0 or the kind of corruption: `round(fraction * steps)` steps,
  drawn without replacement, kinds in equal parts."""
  rng = np.random.default_rng([seed, int(fraction * 1e6)])
  kinds = np.zeros(steps, np.int32)
  bad = rng.choice(steps, size=int(round(fraction * steps)), replace=False)
  kinds[bad] = rng.permutation(np.resize([NAN_PIXEL, SCALED, SCRAMBLED], bad.size))
  return kinds


def make_run(make_tx: Callable, data: problems.MnistData):
  """`run(seed, order, kinds) -> (accuracy, state, params)`, jitted."""

  @jax.jit
  def run(seed, order, kinds):
    params = problems.init_linear(jax.random.PRNGKey(seed))
    tx = make_tx()

    def step(carry, xs):
      params, state = carry
      idx, kind, key = xs
      x, y = corrupt(kind, data.x_train[idx], data.y_train[idx], key)
      value, grads = jax.value_and_grad(problems.cross_entropy)(params, x, y)
      updates, state = tx.update(grads, state, params, value=value)
      return (optax.apply_updates(params, updates), state), None

    keys = jax.random.split(jax.random.PRNGKey(seed + 1), kinds.shape[0])
    (params, state), _ = jax.lax.scan(
        step, (params, tx.init(params)), (order, kinds, keys))
    acc = problems.accuracy(params, data.x_test, data.y_test)
    return acc, state, params

  return run


def summarize(name: str, fraction: float, acc, state, params, eta_max: float) -> dict:
  finite = all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(params))
  row = dict(optimizer=name, fraction=fraction, accuracy=100 * float(acc),
             finite=finite)
  if name.startswith("exptest"):
    s = optax_exptest.exptest_summary(state)
    row.update(cuts=s["num_cuts"], resets=s["num_resets"],
               skipped=s["num_skipped"], rate=s["learning_rate"] / eta_max)
  return row


def table(rows: list[dict], fractions, seeds: int) -> str:
  clean = {(r["optimizer"], r["seed"]): r["accuracy"] for r in rows
           if r["fraction"] == 0}
  out = []
  names = list(dict.fromkeys(r["optimizer"] for r in rows))
  for name in names:
    for f in fractions:
      cell = [r for r in rows if r["optimizer"] == name and r["fraction"] == f]
      acc = [r["accuracy"] for r in cell]
      drop = [r["accuracy"] - clean[(name, r["seed"])] for r in cell]
      mean = lambda k: (f"{np.mean([r[k] for r in cell]):.3g}"
                        if k in cell[0] else "-")
      out.append([
          name, f"{100 * f:g} % ({cell[0]['bad_batches']})",
          f"{np.mean(acc):.2f}", f"{np.mean(drop):+.2f} (worst {min(drop):+.2f})",
          f"{mean('cuts')} / {mean('resets')}", mean("skipped"), mean("rate"),
          f"{sum(r['finite'] for r in cell)}/{len(cell)}",
      ])
  return common.markdown_table(
      ["optimizer", "bad batches", f"test accuracy (mean of {seeds})",
       "vs clean run", "cuts / resets", "skipped", "final rate / eta_max",
       "finite"], out)


EXPLANATION = (
    "A fraction of the steps gets a corrupt batch (a NaN pixel, the images"
    " scaled by 1e4, or the labels scrambled, in equal parts; the same steps"
    " for every optimizer of a seed). ExpTest starts at `lr_upper_bound(x)`"
    " as a user writes it; \"every fault a divergence\" is"
    " `divergence_patience=1, anchor=\"init\"`, the behaviour before faults"
    " were skipped. Scrambled labels give finite, moderate losses and are"
    " trained on (they are not faults), so `skipped` counts the other two"
    " kinds. `python -m benchmarks bad_batches`.\n\n"
)


def steps_of(data: problems.MnistData, epochs: int) -> int:
  """The training steps of `epochs` passes at batch `BATCH`."""
  return epochs * (data.x_train.shape[0] // BATCH)


def measure(chosen: dict[str, Callable], data: problems.MnistData, *, seeds,
            fractions, epochs: int, eta_max: float) -> list[dict]:
  """The rows of every optimizer of `chosen` (name -> make_tx), seed and
  fraction: one `summarize` row each, with its seed and its number of bad
  batches."""
  n = data.x_train.shape[0]
  steps_per_epoch = n // BATCH
  steps = steps_of(data, epochs)
  rows = []
  for name, make_tx in common.progress(chosen.items(), desc="rows"):
    run = make_run(make_tx, data)
    for seed in seeds:
      rng = np.random.default_rng(seed)
      order = np.concatenate([rng.permutation(n)[: steps_per_epoch * BATCH]
                              for _ in range(epochs)]).reshape(steps, BATCH)
      for f in fractions:
        kinds = corruptions(seed, steps, f)
        acc, state, params = run(seed, order, kinds)
        row = summarize(name, f, acc, state, params, eta_max)
        rows.append(dict(row, seed=seed, bad_batches=int(np.sum(kinds > 0))))
        print(row, flush=True)
  return rows


def main(argv: list[str]) -> None:
  args = common.parser(__doc__, seeds=3).parse_args(argv)
  subset, epochs = (1024, 1) if args.quick else (None, 5)
  data = problems.mnist_on_device(subset)
  steps = steps_of(data, epochs)
  eta_max = float(optax_exptest.lr_upper_bound(np.asarray(data.x_train)))
  seeds = range(1 if args.quick else args.seeds)
  fractions = (0.0, 0.01) if args.quick else FRACTIONS
  chosen = optimizers(eta_max)
  if args.quick:
    chosen = {k: v for k, v in chosen.items()
              if k in ("exptest/none", "apply_if_finite(sgd)")}
  rows = measure(chosen, data, seeds=seeds, fractions=fractions, epochs=epochs,
                 eta_max=eta_max)
  md = ("# Bad batches (MNIST logistic regression, batch 32, "
        f"{epochs} epochs, {steps} steps)\n\n" + EXPLANATION
        + table(rows, fractions, len(seeds)))
  common.write_results(common.result_name("bad_batches", args.quick),
                       dict(rows=rows, eta_max=eta_max, steps=steps,
                            epochs=epochs), md, args.out)
  print(md)

