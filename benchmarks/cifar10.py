"""Table 4: CIFAR-10 with a VGG-16 adapted to 32x32 images.

The paper's recipe: VGG-16's 13 convolutions (no batch norm), no global
pooling (the features are already 1x1), a classifier block for 512 inputs
(512-512-10 with ReLU and dropout 0.5; the authors' exact block is in their
code, not the paper), cross-entropy, batch 128, 75 epochs, the best test
accuracy over epochs; ExpTest with momentum 0.9 against SGD, SGD with
momentum, Adam and RMSprop at f * eta_max, f in {0.01, 0.1, 1, 10, 100},
Adadelta, and the peers.

Real data comes through TensorFlow Datasets (`optax_exptest.datasets.
load_tfds("cifar10", ...)`). This machine has neither CIFAR-10 nor a GPU, so
`--quick` (and `--synthetic`) train on generated data of CIFAR's shapes;
the run records epochs per second, the figure a GPU run would report.

Run: `python -m benchmarks cifar10 --quick` (here) or
`python -m benchmarks cifar10 [--seeds N] [--epochs N]` (with a GPU and the
TFDS copy of cifar10).
"""

import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_exptest
from benchmarks.lib import common, optimizers, paper
from benchmarks.lib.trainers import exptest_fields, run_arms

VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512, "M")


class VGG16CIFAR(nn.Module):
  """VGG-16 for 32x32 inputs: 1x1x512 features, a 512-512-10 classifier.

  `width` divides every layer's width (16 in the smoke test: same depth and
  code path, seconds instead of minutes on a CPU).
  """

  width: int = 1

  @nn.compact
  def __call__(self, x, *, train: bool):
    for v in VGG16:
      if v == "M":
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
      else:
        x = nn.relu(nn.Conv(v // self.width, (3, 3), padding=1)(x))
    x = x.reshape(x.shape[0], -1)
    for width in (512, 512):
      x = nn.relu(nn.Dense(width // self.width)(x))
      x = nn.Dropout(0.5, deterministic=not train)(x)
    return nn.Dense(10)(x)


def load(synthetic: bool, size: int = 50_000, test_size: int = 10_000):
  """CIFAR-10 scaled to [0, 1] and standardised per channel."""
  if synthetic:
    rng = np.random.default_rng(0)
    x_train = rng.random((size, 32, 32, 3), np.float32)
    x_test = rng.random((test_size, 32, 32, 3), np.float32)
    y_train = rng.integers(0, 10, size).astype(np.int32)
    y_test = rng.integers(0, 10, test_size).astype(np.int32)
  else:
    from optax_exptest import datasets
    arrays = {split: datasets.to_numpy(datasets.load_tfds("cifar10", split))
              for split in ("train", "test")}
    x_train = arrays["train"]["image"].astype(np.float32) / 255
    x_test = arrays["test"]["image"].astype(np.float32) / 255
    y_train, y_test = arrays["train"]["label"], arrays["test"]["label"]
  mean, std = x_train.mean((0, 1, 2)), x_train.std((0, 1, 2))
  norm = lambda x: (x - mean) / std
  return norm(x_train), y_train, norm(x_test), y_test


def make_run(name, make_tx, *, batch_size, epochs, steps_per_epoch, width=1):
  """`run(hparams, seed, data)`: one arm; the best test accuracy over epochs.

  `data`, `load`'s arrays, is an argument shared by the arms, not a
  constant in the program.
  """
  model = VGG16CIFAR(width)

  def loss_fn(params, x, y, key):
    logits = model.apply(params, x, train=True, rngs={"dropout": key})
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def run(hparams, seed, data):
    x_train, y_train, x_test, y_test = data

    def accuracy(params):
      logits = model.apply(params, x_test, train=False)
      return jnp.mean(jnp.argmax(logits, -1) == y_test)

    tx = make_tx(**hparams)
    init_key, data_key, drop_key = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = model.init(init_key, x_train[:1], train=False)

    def step(carry, inputs):
      params, state = carry
      idx, key = inputs
      value, grads = jax.value_and_grad(loss_fn)(params, x_train[idx], y_train[idx], key)
      updates, state = tx.update(grads, state, params, value=value)
      return (optax.apply_updates(params, updates), state), (value, exptest_fields(state)[1])

    def epoch(carry, e):
      perm = jax.random.permutation(jax.random.fold_in(data_key, e), x_train.shape[0])
      idx = perm[: steps_per_epoch * batch_size].reshape(steps_per_epoch, batch_size)
      keys = jax.random.split(jax.random.fold_in(drop_key, e), steps_per_epoch)
      carry, records = jax.lax.scan(step, carry, (idx, keys))
      params, state = carry
      return carry, (records, accuracy(optimizers.eval_params(name, state, params)))

    _, (records, acc) = jax.lax.scan(epoch, (params, tx.init(params)), jnp.arange(epochs))
    return records, acc

  return run


def main(argv=None):
  parser = common.parser(__doc__)
  parser.add_argument("--synthetic", action="store_true",
                      help="generated data of CIFAR-10's shapes")
  parser.add_argument("--epochs", type=int, default=75)
  args = parser.parse_args(argv)
  start = time.perf_counter()
  if args.quick:
    data = load(True, size=64, test_size=32)
    names, factors, seeds = ["exptest_momentum"], [1.0], np.arange(1)
    batch_size, epochs, steps_per_epoch, width = 8, 1, 3, 16
  else:
    data = load(args.synthetic)
    names = ["exptest_momentum", "adam", "sgd", "momentum", "rmsprop", "adadelta",
             *optimizers.PEERS, "schedule_free_sgd", "exptest", "exptest_adam"]
    factors, seeds = list(paper.CIFAR_FACTORS), np.arange(args.seeds)
    batch_size, epochs = 128, args.epochs
    steps_per_epoch, width = len(data[0]) // batch_size, 1
  eta = optax_exptest.lr_upper_bound(data[0], loss="cross_entropy")
  print(f"eta_max = {eta:.6f} (3072 features: matrix-free Lanczos)")

  table, speed = {}, {}
  for name in common.progress(names, desc="cifar10", unit="optimizer"):
    spec = optimizers.OPTIMIZERS[name]
    fs = factors if spec.uses_grid else [None]
    make_tx = lambda learning_rate, spec=spec: spec.make(learning_rate, eta, False)
    run = make_run(name, make_tx, batch_size=batch_size, epochs=epochs,
                   steps_per_epoch=steps_per_epoch, width=width)
    arm_f = np.repeat([1.0 if f is None else f for f in fs], len(seeds))
    (_, acc), seconds = run_arms(
        run, {"learning_rate": np.asarray(arm_f * eta, np.float32)},
        np.tile(seeds, len(fs)).astype(np.uint32), shared=tuple(map(jnp.asarray, data)),
    )
    best = 100 * acc.max(-1).reshape(len(fs), len(seeds))
    keys = [str(f) for f in fs] if spec.uses_grid else ["none"]
    table[name] = {k: common.mean_std(best[i]) for i, k in enumerate(keys)}
    speed[name] = dict(epochs_per_second=epochs * len(arm_f) / seconds,
                       arms=len(arm_f), seconds=seconds)
  seconds = time.perf_counter() - start

  label = lambda n: optimizers.OPTIMIZERS[n].label
  rows = []
  for n in names:
    rows.append([label(n)] + [common.fmt_mean_std(table[n].get(str(f), table[n].get("none")))
                              for f in factors] + [f"{speed[n]['epochs_per_second']:.3g}"])
    if n in paper.CIFAR10:
      rows.append([f"  paper: {label(n)}"] + [
          "{:.2f} ± {:.2f}".format(*paper.CIFAR10[n][f]) if f in paper.CIFAR10[n] else "-"
          for f in factors] + [""])
  kind = "generated data of CIFAR-10's shapes" if (args.quick or args.synthetic) else "CIFAR-10"
  markdown = "\n".join([
      "# CIFAR-10, VGG-16 (Table 4)",
      "",
      f"Best test accuracy (%) over {epochs} epochs on {kind}, batch {batch_size},"
      f" VGG-16 widths / {width},"
      f" {len(seeds)} seeds, on {jax.default_backend()}; eta_max = {eta:.4f}."
      " Accuracy on generated labels is chance (10%): such a run measures speed.",
      "",
      common.markdown_table(["optimizer"] + [f"{f:g} x eta_max" for f in factors]
                            + ["epochs/s (all arms)"], rows),
      "",
      f"Wall time of this experiment: {seconds:.0f} s.",
  ])
  print(markdown)
  name = "cifar10_quick" if args.quick else ("cifar10_synthetic" if args.synthetic else "cifar10")
  common.write_results(name, dict(eta_max=eta, accuracy=table, speed=speed,
                                  wall_seconds=seconds, data=kind),
                       markdown, args.out)
  if name == "cifar10":
    common.update_summary("cifar10", common.expand_rate_free(table, factors))
  return table


if __name__ == "__main__":
  main()
