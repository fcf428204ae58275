"""The accelerator suite: ExpTest's cost and vmapped rounds, on one device.

Written for the day a GPU is lent (at most about 8 minutes on one GPU); it
runs wherever JAX runs, and `--quick` runs it on a CPU in seconds. Each row
is measured side by side in one process (alternating repeats, medians of
paired ratios):

* ExpTest / SGD step time: MNIST logistic regression (batch 32) as a single
  run, 8 vmapped seeds with their own batches, and 8 vmapped rates over
  three decades sharing one batch stream; the Flax CNN of the examples
  (batch 32); a VGG-16 on CIFAR-shaped generated data (Table 4's shape,
  batch 128). The loops are those of `step_time`.
* A zooming round: k = 1 ... 256 arms of logistic regression (ExpTest from
  k rates) in one vmapped program, against the same k runs one after
  another (the single-run program called k times).
* The VGG-16's epochs per second with ExpTest (50,000 images, batch 128).

Writes `gpu_suite.json` and `gpu_suite.md` (`gpu_suite_quick.*` with
`--quick`). Run: `python -m benchmarks gpu_suite [--quick]`.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_exptest
from benchmarks import step_time
from benchmarks.lib import common
from benchmarks.lib.problems import init_linear, load_mnist

CIFAR_TRAIN_SIZE = 50_000
VGG_BATCH = 128


def vgg_setting(steps: int, width: int):
  """`{optimizer: thunk}` of VGG-16 training loops on generated CIFAR data."""
  from benchmarks.cifar10 import VGG16CIFAR

  model = VGG16CIFAR(width=width)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((steps, VGG_BATCH, 32, 32, 3), np.float32))
  y = jnp.asarray(rng.integers(0, 10, (steps, VGG_BATCH)), jnp.int32)
  params = model.init(jax.random.PRNGKey(0), x[0], train=False)

  def value_and_grad(p, i, d):
    loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(
        model.apply(p, d[0][i], train=False), d[1][i]).mean()
    return jax.value_and_grad(loss)(p)

  return {name: (lambda f=jax.jit(lambda p, d, m=make_tx: step_time.scan_training(
      m, value_and_grad, p, 0.01, jnp.arange(steps), d)): f(params, (x, y)))
          for name, make_tx in step_time.optimizers().items()}


def zooming_rounds(x, y, eta, steps: int, ks, repeats: int) -> list[dict]:
  """Seconds of a round of k ExpTest runs: vmapped against sequential."""
  order = jax.random.permutation(jax.random.PRNGKey(1), x.shape[0])
  batches = order[: steps * step_time.BATCH].reshape(steps, step_time.BATCH)
  data = (x, y)

  def run(rate, data):
    return step_time.scan_training(
        optax_exptest.exptest, step_time.logreg_value_and_grad,
        init_linear(jax.random.PRNGKey(0)), rate, batches, data)[1]

  single = jax.jit(run)
  rows = []
  for k in common.progress(ks, desc="zooming rounds"):
    rates = jnp.asarray(eta * np.logspace(-2, 0.5, k), jnp.float32)
    vmapped = jax.jit(jax.vmap(run, in_axes=(0, None)))
    times = common.interleaved_timings({
        "vmapped": lambda: vmapped(rates, data),
        "sequential": lambda: [single(r, data) for r in rates],
    }, repeats)
    rows.append(dict(
        arms=k, vmapped_seconds=float(np.median(times["vmapped"])),
        sequential_seconds=float(np.median(times["sequential"])),
        speedup=common.paired_ratio(times, "sequential", "vmapped")["median"],
    ))
  return rows


def main(argv=None):
  parser = common.parser(__doc__, seeds=None)
  args = parser.parse_args(argv)
  start = time.perf_counter()
  x_train, y_train, _, _ = load_mnist(subset=6000 if args.quick else None)
  eta = optax_exptest.lr_upper_bound(x_train)
  x, y = jnp.asarray(x_train), jnp.asarray(y_train)
  if args.quick:
    steps = dict(logreg=50, vgg=2)
    arms, repeats, width, ks, zoom_steps = 2, 1, 16, (1, 4), 20
  else:
    steps = dict(logreg=len(x_train) // step_time.BATCH, cnn=200, vgg=100)
    arms, repeats, width, ks, zoom_steps = 8, 5, 1, (1, 4, 16, 64, 256), 500

  settings = step_time.logreg_settings(x, y, eta, steps["logreg"], arms)
  for fns in settings.values():
    fns.pop("sgd_if_finite", None)
  if args.quick:  # The vmapped loops and the CNN are `step_time`'s, smoke-tested there.
    settings = {}
  else:
    settings["cnn single"] = step_time.cnn_setting(steps["cnn"], args.quick)
  settings["vgg single"] = vgg_setting(steps["vgg"], width)
  if args.quick:
    settings["vgg single"].pop("sgd_checked")
  timing = step_time.step_times(settings, steps, repeats)
  rounds = zooming_rounds(x, y, eta, zoom_steps, ks, repeats)
  vgg_step = timing["vgg single"]["median_us_per_step"]["exptest"] * 1e-6
  epochs_per_second = 1 / (vgg_step * (CIFAR_TRAIN_SIZE // VGG_BATCH))
  seconds = time.perf_counter() - start

  device = jax.devices()[0]
  md = [
      "# Accelerator suite",
      "",
      f"Device: {device.device_kind} ({jax.default_backend()});"
      f" {repeats} alternating repeats; wall time {seconds:.0f} s."
      + (" Quick run: tiny sizes, VGG-16 at 1/16 width." if args.quick else ""),
      "",
      common.markdown_table(
          ["loop", "SGD (us/step)", "ExpTest (us/step)", "ExpTest / SGD",
           "bare check / SGD"],
          [[k, r["median_us_per_step"]["sgd"], r["median_us_per_step"]["exptest"],
            r["ratios"]["exptest"]["median"],
            r["ratios"].get("sgd_checked", {}).get("median", "-")]
           for k, r in timing.items()],
      ),
      "",
      f"VGG-16 (batch {VGG_BATCH}) with ExpTest: {epochs_per_second:.3g} epochs"
      f" per second of {CIFAR_TRAIN_SIZE} images.",
      "",
      f"Zooming rounds: k ExpTest runs of {zoom_steps} steps of logistic"
      " regression, one vmapped program against k runs in sequence.",
      "",
      common.markdown_table(
          ["arms k", "vmapped (s)", "sequential (s)", "sequential / vmapped"],
          [[r["arms"], r["vmapped_seconds"], r["sequential_seconds"], r["speedup"]]
           for r in rounds],
      ),
  ]
  markdown = "\n".join(md)
  print(markdown)
  path = common.write_results(
      common.result_name("gpu_suite", args.quick),
      dict(timing=timing, zooming_rounds=rounds, vgg_epochs_per_second=epochs_per_second,
           wall_seconds=seconds, device=str(device)),
      markdown, args.out)
  print(f"wrote {path}")
  return timing


if __name__ == "__main__":
  main()
