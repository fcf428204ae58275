"""MNIST logistic regression with ExpTest: no learning rate chosen.

The paper's recipe (arXiv 2411.16975, section IV-A): a linear layer 784 -> 10,
cross-entropy, batch 32, 5 epochs, plain SGD steps whose rate ExpTest finds
from the bound `lr_upper_bound(x_train)` with alpha 0.05 and beta 0.33; inputs
normalised by the global mean and std of the training pixels.

Run with `make demo` (or `python examples/mnist_demo.py --help`). Prints the
bound, every decision (at the update's number, the first update being step 1)
and the test accuracy; writes the run as JSON and the loss curve with the
decisions marked as PNG (`optax_exptest.plotting.plot_run`).
"""

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

import optax_exptest
from optax_exptest import Decision

PHASE_OF = {
    Decision.EXPONENTIAL: "searching", Decision.RESTART: "searching",
    Decision.DECREASING: "tuning", Decision.PLATEAU: "tuning",
    Decision.DIVERGED: "diverged", Decision.SKIPPED: "skipped",
}


def load_data(subset=None, data_dir=None):
  """Flattened MNIST, normalised by the training pixels' global mean and std."""
  mnist = optax_exptest.datasets.load_mnist(data_dir)
  x_train = mnist["train_images"].reshape(-1, 784).astype(np.float32) / 255
  x_test = mnist["test_images"].reshape(-1, 784).astype(np.float32) / 255
  y_train, y_test = mnist["train_labels"], mnist["test_labels"]
  if subset:
    x_train, y_train = x_train[:subset], y_train[:subset]
    x_test, y_test = x_test[: subset // 6], y_test[: subset // 6]
  mean, std = x_train.mean(), x_train.std()
  return (x_train - mean) / std, y_train, (x_test - mean) / std, y_test


def init_linear(key, n_in=784, n_out=10):
  """PyTorch's `nn.Linear` initialisation, as in the authors' code."""
  bound = 1 / np.sqrt(n_in)
  kw, kb = jax.random.split(key)
  return {
      "w": jax.random.uniform(kw, (n_in, n_out), minval=-bound, maxval=bound),
      "b": jax.random.uniform(kb, (n_out,), minval=-bound, maxval=bound),
  }


def loss_fn(params, x, y):
  logits = x @ params["w"] + params["b"]
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def make_chunk(tx, x_train, y_train, batch_size):
  """A jitted run of consecutive steps over given batch indices."""

  def step(carry, idx):
    params, state = carry
    value, grads = jax.value_and_grad(loss_fn)(params, x_train[idx], y_train[idx])
    updates, state = tx.update(grads, state, params, value=value)
    record = (value, state.decision, state.p_value, state.learning_rate)
    return (optax.apply_updates(params, updates), state), record

  @jax.jit
  def chunk(params, state, indices):
    return jax.lax.scan(step, (params, state), indices.reshape(-1, batch_size))

  return chunk


def accuracy(params, x, y):
  return float(jnp.mean(jnp.argmax(x @ params["w"] + params["b"], -1) == y))


def train(args, log=print):
  """Trains one seed; returns the run's record as a dict."""
  start = time.perf_counter()
  x_train, y_train, x_test, y_test = load_data(args.subset, args.data_dir)
  eta_max = optax_exptest.lr_upper_bound(x_train, loss="cross_entropy")
  log(f"eta_max = {eta_max:.8f} (from the training inputs' correlation matrix)")

  tx = optax_exptest.exptest(eta_max, alpha=args.alpha, beta=args.beta)
  key = jax.random.PRNGKey(args.seed)
  key, init_key = jax.random.split(key)
  params = init_linear(init_key)
  state = tx.init(params)
  steps_per_epoch = len(x_train) // args.batch_size
  chunk_steps = max(1, steps_per_epoch // args.chunks_per_epoch)
  chunk = make_chunk(tx, jnp.asarray(x_train), jnp.asarray(y_train), args.batch_size)

  losses, rates, decisions = [], [], []
  rate = eta_max
  total = steps_per_epoch * args.epochs
  with tqdm(total=total, desc="ExpTest on MNIST", unit="step", disable=args.quiet) as bar:
    for _ in range(args.epochs):
      key, perm_key = jax.random.split(key)
      perm = jax.random.permutation(perm_key, len(x_train))
      for first in range(0, steps_per_epoch, chunk_steps):
        n = min(chunk_steps, steps_per_epoch - first)
        batch = perm[first * args.batch_size:(first + n) * args.batch_size]
        (params, state), (values, codes, p_values, rates_now) = chunk(params, state, batch)
        codes, p_values, rates_now = map(np.asarray, (codes, p_values, rates_now))
        for i in np.nonzero(codes)[0]:
          step = len(losses) + int(i) + 1  # the update's number, as exptest_summary's
          d = Decision(int(codes[i]))
          decisions.append(dict(
              step=step, decision=d.name.lower(), phase=PHASE_OF[d],
              p_value=float(p_values[i]), old_rate=rate, new_rate=float(rates_now[i]),
          ))
          line = (f"step {step:6d}  {PHASE_OF[d]:9s}  {d.name.lower():11s}"
                  f"  p = {p_values[i]:.3g}  rate {rate:.4g} -> {rates_now[i]:.4g}")
          (bar.write if not args.quiet else log)(line)
          rate = float(rates_now[i])
        losses.extend(np.asarray(values).tolist())
        rates.extend(rates_now.tolist())
        bar.update(n)

  test_acc = accuracy(params, jnp.asarray(x_test), jnp.asarray(y_test))
  log(f"final rate {rate:.4g} after {int(state.num_cuts)} cuts and"
      f" {int(state.num_resets)} resets")
  log(f"test accuracy: {100 * test_acc:.2f}%")
  return dict(
      recipe=dict(
          model="linear 784 -> 10", loss="cross_entropy", batch_size=args.batch_size,
          epochs=args.epochs, alpha=args.alpha, beta=args.beta, seed=args.seed,
          subset=args.subset,
      ),
      eta_max=eta_max, decisions=decisions, final_learning_rate=rate,
      num_cuts=int(state.num_cuts), num_resets=int(state.num_resets),
      test_accuracy=test_acc, train_loss=losses, learning_rate=rates,
      seconds=time.perf_counter() - start,
  )


def plot(run, path):
  """The loss curve with ExpTest's decisions marked (`optax_exptest.plotting`)."""
  import matplotlib
  matplotlib.use("Agg")  # a file, never a window
  import matplotlib.pyplot as plt

  ax = optax_exptest.plotting.plot_run(
      run["train_loss"], run["decisions"], run["learning_rate"], log_steps=True,
      loss_label="training loss (cross-entropy)",
      title=f"ExpTest on MNIST: test accuracy {100 * run['test_accuracy']:.2f}%,"
            f" eta_max {run['eta_max']:.4f}")
  ax.figure.tight_layout()
  ax.figure.savefig(path, dpi=120)
  plt.close(ax.figure)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=5)
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--alpha", type=float, default=0.05)
  parser.add_argument("--beta", type=float, default=0.33)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--subset", type=int, default=None,
                      help="train on the first N images only (smoke tests)")
  parser.add_argument("--chunks-per-epoch", type=int, default=25,
                      help="progress-bar updates per epoch")
  parser.add_argument("--data-dir", default=None)
  parser.add_argument("--out", default="runs", help="folder for JSON and PNG")
  parser.add_argument("--quiet", action="store_true", help="no progress bar")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  run = train(args)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  stem = out / f"mnist_exptest_seed{args.seed}"
  stem.with_suffix(".json").write_text(json.dumps(run, indent=1))
  plot(run, stem.with_suffix(".png"))
  print(f"wrote {stem}.json and {stem}.png ({run['seconds']:.1f} s)")
  return run


if __name__ == "__main__":
  main()
