"""Many MNIST logistic-regression runs at once: the paper's section IV-A.

`train(...)` vmaps whole training runs over arms (seeds x learning rates, or
seeds x ExpTest hyperparameters): one compiled program per optimizer, the
arms' data orders drawn from their seeds, the test accuracy measured
`evals_per_epoch` times per epoch inside the same program.
"""

import time
from typing import Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import common
from benchmarks import optimizers
from examples.mnist_demo import init_linear, load_data, loss_fn


class MnistData(NamedTuple):
  x_train: jax.Array
  y_train: jax.Array
  x_test: jax.Array
  y_test: jax.Array


def load(subset=None) -> MnistData:
  """The demo's data: globally normalised pixels, on the device."""
  return MnistData(*map(jnp.asarray, load_data(subset)))


class Runs(NamedTuple):
  """Results of `train`, one row per arm (numpy arrays)."""

  losses: np.ndarray  # (arms, steps) mini-batch training loss
  accuracy: np.ndarray  # (arms, evals) test accuracy after each eval chunk
  eval_steps: np.ndarray  # (evals,) steps done at each evaluation
  learning_rate: np.ndarray  # (arms, steps) ExpTest's rate (nan otherwise)
  decision: np.ndarray  # (arms, steps) ExpTest's decision codes (0 otherwise)
  seconds: float  # wall time of the whole batch of runs, compile excluded


def exptest_fields(state):
  """ExpTest's rate and decision in `state` (nan and 0 for other optimizers)."""
  rate = optax.tree.get(state, "learning_rate", jnp.nan)
  decision = optax.tree.get(state, "decision", jnp.zeros((), jnp.int32))
  return jnp.asarray(rate, jnp.float32), decision


def make_run(
    name: str, make_tx: Callable, data: MnistData, *, batch_size: int,
    epochs: int, evals_per_epoch: int,
):
  """`run(hparams, seed)` training one arm; pure, so it vmaps."""
  n = data.x_train.shape[0]
  steps_per_epoch = n // batch_size
  evals = min(evals_per_epoch, steps_per_epoch)
  chunk = steps_per_epoch // evals
  # An epoch starts with the steps that do not fill a chunk, so that every
  # epoch has all its steps and ends with an evaluation.
  head = steps_per_epoch - evals * chunk

  def accuracy(params):
    logits = data.x_test @ params["w"] + params["b"]
    return jnp.mean(jnp.argmax(logits, -1) == data.y_test)

  def run(hparams, seed):
    tx = make_tx(**hparams)
    init_key, data_key = jax.random.split(jax.random.PRNGKey(seed))
    params = init_linear(init_key)

    def step(carry, idx):
      params, state = carry
      x, y = data.x_train[idx], data.y_train[idx]
      value, grads = jax.value_and_grad(loss_fn)(params, x, y)
      updates, state = tx.update(grads, state, params, value=value)
      rate, decision = exptest_fields(state)
      return (optax.apply_updates(params, updates), state), (value, rate, decision)

    def evaluate(carry, indices):
      carry, records = jax.lax.scan(step, carry, indices)
      params, state = carry
      return carry, (records, accuracy(optimizers.eval_params(name, state, params)))

    def epoch(carry, e):
      perm = jax.random.permutation(jax.random.fold_in(data_key, e), n)
      perm = perm[: steps_per_epoch * batch_size]
      carry, head_records = jax.lax.scan(
          step, carry, perm[: head * batch_size].reshape(head, batch_size)
      )
      indices = perm[head * batch_size:].reshape(evals, chunk, batch_size)
      carry, (records, acc) = jax.lax.scan(evaluate, carry, indices)
      records = jax.tree.map(
          lambda h, r: jnp.concatenate([h, r.reshape(-1)]), head_records, records
      )
      return carry, (records, acc)

    _, (records, acc) = jax.lax.scan(
        epoch, (params, tx.init(params)), jnp.arange(epochs)
    )
    return jax.tree.map(lambda x: x.reshape(-1), records), acc.reshape(-1)

  eval_steps = (np.arange(epochs)[:, None] * steps_per_epoch + head
                + chunk * np.arange(1, evals + 1)[None, :]).reshape(-1)
  return run, eval_steps


def train(
    name: str, hparams: Mapping[str, np.ndarray], seeds: np.ndarray,
    data: MnistData, *, eta_max: float, batch_size: int = 32, epochs: int = 5,
    evals_per_epoch: int = 10, make_tx: Callable | None = None,
) -> Runs:
  """Trains one arm per (hparams[i], seeds[i]), all in one vmapped program.

  Args:
    name: a key of `optimizers.OPTIMIZERS` (for evaluation and the default
      factory).
    hparams: per-arm keyword arrays of `make_tx`; by default
      `{"learning_rate": ...}` for the optimizer's factory.
    seeds: per-arm seeds (initialisation and data order).
    data: `load()`'s arrays.
    eta_max: the bound, given to the factories that start from it.
    batch_size, epochs, evals_per_epoch: the recipe.
    make_tx: overrides the registry's factory (e.g. ExpTest's alpha, beta).

  Returns:
    `Runs`, arms in the order given.
  """
  spec = optimizers.OPTIMIZERS[name]
  full_batch = batch_size >= data.x_train.shape[0]
  if make_tx is None:
    make_tx = lambda learning_rate: spec.make(learning_rate, eta_max, full_batch)
  run, eval_steps = make_run(
      name, make_tx, data, batch_size=batch_size, epochs=epochs,
      evals_per_epoch=evals_per_epoch,
  )
  hparams = {k: np.asarray(v, np.float32) for k, v in hparams.items()}
  ((losses, rates, decisions), acc), seconds = common.run_arms(
      run, hparams, np.asarray(seeds, np.uint32)
  )
  return Runs(
      losses=np.asarray(losses), accuracy=np.asarray(acc), eval_steps=eval_steps,
      learning_rate=np.asarray(rates), decision=np.asarray(decisions),
      seconds=seconds,
  )


def seconds_per_step(name: str, data: MnistData, *, eta_max: float,
                     learning_rate: float, steps: int = 2000, batch_size=32):
  """Median wall time of one unbatched training step (for time-to-accuracy)."""
  spec = optimizers.OPTIMIZERS[name]
  make_tx = lambda learning_rate: spec.make(learning_rate, eta_max, False)
  epochs = 1
  sub = MnistData(data.x_train[: steps * batch_size], data.y_train[: steps * batch_size],
                  data.x_test[:10], data.y_test[:10])
  run, _ = make_run(name, make_tx, sub, batch_size=batch_size, epochs=epochs,
                    evals_per_epoch=1)
  f = jax.jit(lambda: run({"learning_rate": jnp.float32(learning_rate)}, 0))
  jax.block_until_ready(f())
  times = []
  for _ in range(3):
    start = time.perf_counter()
    jax.block_until_ready(f())
    times.append(time.perf_counter() - start)
  return float(np.median(times)) / steps
