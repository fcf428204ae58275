"""How the benchmarks run arms, and the trainers built on it.

An arm is one training run (one seed, one learning rate or other
hyperparameters). `run_arms` runs a batch of them as `jax.jit(jax.vmap(run))`
with the arm axis sharded over all devices: one compiled program per
optimizer. `compile_mapped` runs them one after another on one device
instead, and `run_on_devices` runs such programs side by side, one per
device (Table 1: a vmapped arm with its own batches costs about twice a
single run per step on XLA:CPU). `train_mnist` (the ExpTest paper's section
IV-A) and `train_california` (section IV-B) build one arm's `run` for
a problem of `problems` and an optimizer of `optimizers`, then call it.
"""

import concurrent.futures
import contextlib
import functools
import threading
import time
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.lib import optimizers
from benchmarks.lib import problems


def compile_arms(
    fn: Callable, *args: Any, shared: Any = None
) -> Callable[[], tuple[Any, float]]:
  """Compiles `jax.jit(jax.vmap(fn))` for `args`; returns a thunk running it.

  The arms (leading axis of every argument) are padded to a multiple of the
  number of devices used (at most one per arm) by repeating the last one,
  sharded with a `NamedSharding`, and the padding is dropped from the
  outputs. `shared` (e.g. the dataset), if given, is passed to every arm as
  `fn`'s last argument, replicated: an argument, not a constant closed
  over, which XLA would embed in the program (hundreds of MB of HLO for
  MNIST, and seconds of compilation). The thunk returns the outputs (on the
  host) and the wall time of the run. Compiling is separate so that an
  experiment can compile its programs on a thread pool while it runs the
  ones ready (`compiling`).
  """
  arms = jax.tree.leaves(args)[0].shape[0]
  devices = jax.devices()[:arms]
  padded = -(-arms // len(devices)) * len(devices)
  pad = lambda x: np.concatenate([x, np.repeat(x[-1:], padded - arms, 0)])
  args = jax.tree.map(lambda x: pad(np.asarray(x)), args)
  mesh = jax.sharding.Mesh(np.asarray(devices), ("arms",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("arms"))
  args = jax.device_put(args, sharding)
  in_axes = (0,) * len(args)
  if shared is not None:
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    args += (jax.device_put(shared, replicated),)
    in_axes += (None,)
  compiled = jax.jit(jax.vmap(fn, in_axes=in_axes)).lower(*args).compile()

  def run():
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    seconds = time.perf_counter() - start
    return jax.tree.map(lambda x: np.asarray(x)[:arms], out), seconds

  return run


def compile_mapped(
    fn: Callable, *args: Any, shared: Any = None, device: Any = None
) -> Callable[[], tuple[Any, float]]:
  """Compiles `jax.lax.map(fn)` over the leading axis of `args`, on one
  device; returns a thunk running it, as `compile_arms` does.

  The arms run one after another in one program: a single run's work per
  step, without the batched matmuls and transposes that `vmap` adds for
  arms with their own batches (on XLA:CPU, about twice a single run's time
  per arm-step). Programs on different devices run side by side
  (`run_on_devices`).
  """
  device = device or jax.devices()[0]
  args = jax.device_put(jax.tree.map(np.asarray, args), device)
  extra = () if shared is None else (jax.device_put(shared, device),)
  mapped = lambda args, *extra: jax.lax.map(lambda a: fn(*a, *extra), args)
  compiled = jax.jit(mapped).lower(args, *extra).compile()

  def run():
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(args, *extra))
    seconds = time.perf_counter() - start
    return jax.tree.map(np.asarray, out), seconds

  return run


class Compiling:
  """Programs compiling on a thread pool (`compiling`); `result(name)` waits
  for one, or with `wait_for_all` for every one."""

  def __init__(self, futures):
    self._futures, self.seconds = futures, None
    self._done = threading.Lock()

  def result(self, name: str, wait_for_all: bool = False):
    if wait_for_all:
      concurrent.futures.wait(self._futures.values())
      with self._done:
        if self.seconds is None:
          self.seconds = time.perf_counter()
    return self._futures[name].result()


@contextlib.contextmanager
def compiling(builders: Mapping[str, Callable[[], Any]], workers: int = 2):
  """Starts `builders[name]()` on `workers` threads, in order; yields a
  `Compiling`. Its `seconds` is the `time.perf_counter()` at which every
  program was first seen compiled (None until then). XLA compiles with the
  GIL released, so programs can run while the others compile."""
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    futures = {name: pool.submit(build) for name, build in builders.items()}
    compiled = Compiling(futures)
    yield compiled
    compiled.result(next(iter(futures)), wait_for_all=True)


def balance(costs: Mapping[str, float], bins: int) -> dict[str, int]:
  """Assigns each job to one of `bins` devices, the costliest first to the
  least loaded (longest processing time first)."""
  load, assignment = [0.0] * bins, {}
  for name in sorted(costs, key=costs.get, reverse=True):
    assignment[name] = load.index(min(load))
    load[assignment[name]] += costs[name]
  return assignment


def run_on_devices(jobs: Mapping[str, tuple[int, Callable[[], Any]]],
                   on_done: Callable[[str], None] = lambda name: None) -> dict[str, Any]:
  """Runs `jobs[name] = (device index, thunk)`: one thread per device, each
  calling its thunks in the order given. JAX releases the GIL while a
  program runs, so the devices' programs run in parallel. Returns
  `{name: result}` in the order given."""
  queues: dict[int, list[str]] = {}
  for name, (index, _) in jobs.items():
    queues.setdefault(index, []).append(name)
  results = {}

  def work(names):
    for name in names:
      results[name] = jobs[name][1]()
      on_done(name)

  with concurrent.futures.ThreadPoolExecutor(max(1, len(queues))) as pool:
    for future in [pool.submit(work, names) for names in queues.values()]:
      future.result()
  return {name: results[name] for name in jobs}


def run_arms(fn: Callable, *args: Any, shared: Any = None) -> tuple[Any, float]:
  """Runs `jax.jit(jax.vmap(fn))(*args)` with the arm axis over all devices
  (`compile_arms`); returns the outputs and the run's wall time, compilation
  excluded."""
  return compile_arms(fn, *args, shared=shared)()


def exptest_fields(state):
  """ExpTest's rate and decision in `state` (nan and 0 for other optimizers)."""
  rate = optax.tree.get(state, "learning_rate", jnp.nan)
  decision = optax.tree.get(state, "decision", jnp.zeros((), jnp.int32))
  return jnp.asarray(rate, jnp.float32), decision


# ----------------------------------------------------------------------------
# MNIST logistic regression: the data order and the evaluations inside.


class MnistRuns(NamedTuple):
  """Results of `train_mnist`, one row per arm (numpy arrays)."""

  losses: np.ndarray  # (arms, steps) mini-batch training loss
  accuracy: np.ndarray  # (arms, evals) test accuracy after each eval chunk
  eval_steps: np.ndarray  # (evals,) steps done at each evaluation
  learning_rate: np.ndarray  # (arms, steps) ExpTest's rate (nan otherwise)
  decision: np.ndarray  # (arms, steps) ExpTest's decision codes (0 otherwise)
  seconds: float  # wall time of the whole batch of runs, compile excluded


class MnistStart(NamedTuple):
  """What a seed fixes: the initial parameters and each epoch's batches."""

  params: Any  # problems.init_linear's tree
  batches: jax.Array  # (epochs, steps per epoch, batch size) training indices


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def mnist_start(seeds, n: int, epochs: int, batch_size: int) -> MnistStart:
  """`MnistStart` of each seed (leading axis): `PRNGKey(seed)` splits into
  the initialisation's key and the data order's; epoch `e` takes the
  permutation of `fold_in(data key, e)`, cut to whole batches."""
  steps = n // batch_size

  def one(seed):
    init_key, data_key = jax.random.split(jax.random.PRNGKey(seed))
    perm = lambda e: jax.random.permutation(jax.random.fold_in(data_key, e), n)
    batches = jax.vmap(perm)(jnp.arange(epochs))[:, : steps * batch_size]
    return MnistStart(problems.init_linear(init_key),
                      batches.reshape(epochs, steps, batch_size))

  return jax.vmap(one)(seeds)


def make_mnist_run(
    name: str, make_tx: Callable, data: problems.MnistData, *, batch_size: int,
    epochs: int, evals_per_epoch: int, evaluate_after: bool = False,
):
  """`run(hparams, start, data)`: the arms of one seed; pure, so it vmaps.

  `start` is the seed's `mnist_start`: its initial parameters and batch
  order, drawn outside the training programs (the threefry hash, unrolled
  in every program that draws, made about a third of a program's
  compilation). `hparams` leaves have a leading axis of the arms that share
  the seed (the
  same initialisation and batches, e.g. the factors of a rate grid): each
  step gathers one batch and the arms take it together, as a sweep does
  (a batched matmul, about 2x less time per arm than arms gathering their
  own batches). `data` is an argument, shared by all arms, of the shapes of
  the `data` given.

  With `evaluate_after`, the run returns the parameters to evaluate at each
  evaluation point instead of their accuracy (`snapshot_accuracy` scores
  them all in one matmul afterwards): the training program then holds only
  training steps, so its wall time per step is the optimizer's.
  """
  n = data.x_train.shape[0]
  steps_per_epoch = n // batch_size
  evals = min(evals_per_epoch, steps_per_epoch)
  chunk = steps_per_epoch // evals
  # An epoch starts with the steps that do not fill a chunk, so that every
  # epoch has all its steps and ends with an evaluation.
  head = steps_per_epoch - evals * chunk

  def run(hparams, start, data):
    arms = jax.tree.leaves(hparams)[0].shape[0]
    params = jax.tree.map(
        lambda p: jnp.broadcast_to(p, (arms,) + p.shape), start.params)
    states = jax.vmap(lambda h, p: make_tx(**h).init(p))(hparams, params)

    def step(carry, idx):
      x, y = data.x_train[idx], data.y_train[idx]

      def arm(h, params, state):
        value, grads = jax.value_and_grad(problems.cross_entropy)(params, x, y)
        updates, state = make_tx(**h).update(grads, state, params, value=value)
        rate, decision = exptest_fields(state)
        return optax.apply_updates(params, updates), state, (value, rate, decision)

      params, states, records = jax.vmap(arm)(hparams, *carry)
      return (params, states), records

    # One scan over the epoch's steps, evaluating behind a `lax.cond` on the
    # step index (not batched, so it stays a branch under `vmap`): the step
    # is traced and compiled once.
    last_of_chunk = np.zeros(steps_per_epoch, bool)
    last_of_chunk[head + chunk * np.arange(1, evals + 1) - 1] = True

    def step_and_evaluate(carry, xs):
      evaluate, idx = xs
      carry, record = step(carry, idx)
      params, state = carry
      acc = jax.lax.cond(
          evaluate,
          jax.vmap(lambda p, s: problems.accuracy(
              optimizers.eval_params(name, s, p), data.x_test, data.y_test)),
          lambda p, s: jnp.full((arms,), jnp.nan, jnp.float32),
          params, state,
      )
      return carry, (record, acc)

    def step_and_snapshot(carry, xs):
      evaluate, slot, idx = xs
      (params, state), snapshots = carry
      (params, state), record = step((params, state), idx)
      # Written in place at evaluation steps only (the predicate is not
      # batched, so this stays a branch under `vmap`).
      snapshots = jax.lax.cond(
          evaluate,
          lambda snaps: jax.tree.map(
              lambda buf, p: jax.lax.dynamic_update_index_in_dim(buf, p, slot, 1),
              snaps, jax.vmap(lambda p, s: optimizers.eval_params(name, s, p))(params, state)),
          lambda snaps: snaps, snapshots)
      return ((params, state), snapshots), (record, ())

    def epoch(carry, batches):
      if not evaluate_after:
        carry, (records, acc) = jax.lax.scan(
            step_and_evaluate, carry, (jnp.asarray(last_of_chunk), batches))
        return carry, (records, acc[last_of_chunk])
      snapshots = jax.tree.map(
          lambda p: jnp.zeros((arms, evals) + p.shape[1:], p.dtype), carry[0])
      slots = np.maximum(np.cumsum(last_of_chunk) - 1, 0)
      (carry, snapshots), (records, _) = jax.lax.scan(
          step_and_snapshot, (carry, snapshots),
          (jnp.asarray(last_of_chunk), jnp.asarray(slots), batches))
      return carry, (records, snapshots)

    _, (records, evaluated) = jax.lax.scan(epoch, (params, states), start.batches)
    # (epochs, steps or evals, arms) -> (arms, epochs * ...).
    per_arm = lambda x: jnp.moveaxis(x, -1, 0).reshape(arms, -1)
    if evaluate_after:  # (epochs, arms, evals, ...) -> (arms, epochs * evals, ...)
      merge = lambda x: jnp.moveaxis(x, 0, 1).reshape((arms, -1) + x.shape[3:])
      return jax.tree.map(per_arm, records), jax.tree.map(merge, evaluated)
    return jax.tree.map(per_arm, records), per_arm(evaluated)

  eval_steps = (np.arange(epochs)[:, None] * steps_per_epoch + head
                + chunk * np.arange(1, evals + 1)[None, :]).reshape(-1)
  return run, eval_steps


@jax.jit
def _accuracies(flat, x, y):
  """`problems.accuracy` of each model of `flat` (leading axis), in chunks
  whose logits fit in memory; each chunk is one matmul."""
  one = lambda p: problems.accuracy(p, x, y)
  return jax.lax.map(one, flat, batch_size=256)


def snapshot_accuracy(snapshots, data: problems.MnistData) -> np.ndarray:
  """Test accuracy of the linear models in `snapshots` (leading axes kept)."""
  lead = snapshots["b"].shape[:-1]
  flat = {k: jnp.reshape(v, (-1,) + v.shape[len(lead):]) for k, v in snapshots.items()}
  return np.asarray(_accuracies(flat, data.x_test, data.y_test)).reshape(lead)


def _seed_groups(seeds: np.ndarray) -> np.ndarray:
  """`(groups, arms per group)` indices of the arms that share a seed (one
  arm per group if the seeds do not split evenly)."""
  unique = list(dict.fromkeys(seeds.tolist()))
  groups = [np.flatnonzero(seeds == s) for s in unique]
  if len({len(g) for g in groups}) != 1:
    return np.arange(len(seeds))[:, None]
  return np.stack(groups)


def compile_mnist(
    name: str, hparams: Mapping[str, np.ndarray], seeds: np.ndarray,
    data: problems.MnistData, *, eta_max: float, batch_size: int = 32,
    epochs: int = 5, evals_per_epoch: int = 10, make_tx: Callable | None = None,
    device: Any = None, evaluate_after: bool = False,
) -> Callable[[], MnistRuns]:
  """`train_mnist`'s program, compiled; returns the thunk that runs it.

  With `device` given, the seeds run one after another on that device
  (`compile_mapped`; the arms of one seed still take its batches together);
  otherwise side by side, vmapped and sharded over all devices
  (`compile_arms`). With `evaluate_after`, the program returns the
  parameters at each evaluation and `snapshot_accuracy` scores them after
  the timed run (see `make_mnist_run`); the accuracies are the same.
  """
  spec = optimizers.OPTIMIZERS[name]
  full_batch = batch_size >= data.x_train.shape[0]
  if make_tx is None:
    make_tx = lambda learning_rate: spec.make(learning_rate, eta_max, full_batch)
  run, eval_steps = make_mnist_run(
      name, make_tx, data, batch_size=batch_size, epochs=epochs,
      evals_per_epoch=evals_per_epoch, evaluate_after=evaluate_after,
  )
  groups = _seed_groups(np.asarray(seeds))
  hparams = {k: np.asarray(v, np.float32)[groups] for k, v in hparams.items()}
  start = jax.tree.map(np.asarray, mnist_start(
      np.asarray(seeds, np.uint32)[groups[:, 0]], data.x_train.shape[0], epochs,
      batch_size))
  if device is None:
    compiled = compile_arms(run, hparams, start, shared=data)
  else:
    compiled = compile_mapped(run, hparams, start, shared=data, device=device)

  def train():
    # (seeds, arms of a seed, ...) back to the arms' order.
    out, seconds = compiled()
    if evaluate_after:
      out = (out[0], snapshot_accuracy(out[1], data))
    order = np.argsort(groups.ravel())
    ((losses, rates, decisions), acc) = jax.tree.map(
        lambda x: np.asarray(x).reshape((-1,) + x.shape[2:])[order], out)
    return MnistRuns(
        losses=np.asarray(losses), accuracy=np.asarray(acc), eval_steps=eval_steps,
        learning_rate=np.asarray(rates), decision=np.asarray(decisions),
        seconds=seconds,
    )

  return train


def train_mnist(
    name: str, hparams: Mapping[str, np.ndarray], seeds: np.ndarray,
    data: problems.MnistData, *, eta_max: float, batch_size: int = 32,
    epochs: int = 5, evals_per_epoch: int = 10, make_tx: Callable | None = None,
) -> MnistRuns:
  """Trains one arm per (hparams[i], seeds[i]), all in one vmapped program.

  Args:
    name: a key of `optimizers.OPTIMIZERS` (for evaluation and the default
      factory).
    hparams: per-arm keyword arrays of `make_tx`; by default
      `{"learning_rate": ...}` for the optimizer's factory.
    seeds: per-arm seeds (initialisation and data order).
    data: `problems.mnist_on_device()`'s arrays.
    eta_max: the bound, given to the factories that start from it.
    batch_size, epochs, evals_per_epoch: the recipe.
    make_tx: overrides the registry's factory (e.g. ExpTest's alpha, beta).

  Returns:
    `MnistRuns`, arms in the order given.
  """
  return compile_mnist(
      name, hparams, seeds, data, eta_max=eta_max, batch_size=batch_size,
      epochs=epochs, evals_per_epoch=evals_per_epoch, make_tx=make_tx,
  )()


def compile_seconds_per_step(name: str, data: problems.MnistData, *,
                             eta_max: float, learning_rate: float,
                             steps: int = 2000, batch_size=32) -> Callable[[], float]:
  """Compiles one unbatched training run; returns the thunk giving its
  median wall time per step (for time-to-accuracy)."""
  spec = optimizers.OPTIMIZERS[name]
  make_tx = lambda learning_rate: spec.make(learning_rate, eta_max, False)
  sub = problems.MnistData(
      data.x_train[: steps * batch_size], data.y_train[: steps * batch_size],
      data.x_test[:10], data.y_test[:10])
  run, _ = make_mnist_run(name, make_tx, sub, batch_size=batch_size,
                          epochs=1, evals_per_epoch=1)
  steps = sub.x_train.shape[0] // batch_size  # fewer where the data are fewer
  start = jax.tree.map(lambda x: x[0], mnist_start(
      np.zeros(1, np.uint32), sub.x_train.shape[0], 1, batch_size))
  f = jax.jit(lambda sub, start: run(
      {"learning_rate": jnp.full((1,), learning_rate, jnp.float32)}, start, sub))
  f = f.lower(sub, start).compile()

  def seconds():
    jax.block_until_ready(f(sub, start))
    times = []
    for _ in range(3):
      start_time = time.perf_counter()
      jax.block_until_ready(f(sub, start))
      times.append(time.perf_counter() - start_time)
    return float(np.median(times)) / steps

  return seconds


# ----------------------------------------------------------------------------
# California housing: full-batch gradient descent.


class CaliforniaRuns(NamedTuple):
  """Results of `train_california`, one row per arm (numpy arrays)."""

  losses: np.ndarray  # (arms, steps) full-batch training MSE
  val: np.ndarray  # (arms, evals) validation MSE
  test: np.ndarray  # (arms, evals) test MSE
  eval_steps: np.ndarray  # (evals,)
  final_test: np.ndarray  # (arms,) test MSE of the final iterate
  best_val_test: np.ndarray  # (arms,) test MSE at the best validation MSE
  decision: np.ndarray  # (arms, steps) ExpTest's decision codes
  seconds: float


def make_california_run(
    name: str, make_tx: Callable, *, steps: int, eval_every: int, row_chunks: int,
):
  """`run(hparams, seed, data)` training one arm; pure, so it vmaps (`data`,
  a `problems.CaliforniaData`, is an argument shared by the arms)."""

  def run(hparams, seed, data):
    tx = make_tx(**hparams)
    params = problems.init_mlp(jax.random.PRNGKey(seed))

    def step(carry, _):
      params, state = carry
      value, grads = problems.full_batch_value_and_grad(
          params, data.x_train, data.y_train, row_chunks
      )
      updates, state = tx.update(grads, state, params, value=value)
      _, decision = exptest_fields(state)
      return (optax.apply_updates(params, updates), state), (value, decision)

    def evaluate(carry, _):
      carry, records = jax.lax.scan(step, carry, None, length=eval_every)
      params, state = carry
      p = optimizers.eval_params(name, state, params)
      return carry, (records, problems.mse(p, data.x_val, data.y_val),
                     problems.mse(p, data.x_test, data.y_test))

    _, (records, val, test) = jax.lax.scan(
        evaluate, (params, tx.init(params)), None, length=steps // eval_every
    )
    return jax.tree.map(lambda r: r.reshape(-1), records), val, test

  return run


def train_california(
    name: str, hparams: Mapping[str, np.ndarray], seeds: np.ndarray,
    data: problems.CaliforniaData, *, eta_max: float, steps: int = 10_000,
    eval_every: int = 10, row_chunks: int | None = None,
) -> CaliforniaRuns:
  """Trains one arm per (hparams[i], seeds[i]) in one vmapped program.

  The authors' recipe: full-batch gradient descent for `steps` iterations;
  the training loss every step, the validation and test MSE every
  `eval_every` steps, so that both the final iterate's test MSE (what the
  paper's Table 3 reports) and the test MSE of the best-validation
  checkpoint (what its text describes) come out of one run. The full-batch
  gradient is summed over `row_chunks` slices of the training rows
  (`problems.full_batch_value_and_grad`); the slices shrink as more arms
  share a device (`problems.auto_row_chunks`: 25 arms run about 10% faster
  in 72 slices than in 16).
  """
  spec = optimizers.OPTIMIZERS[name]
  make_tx = lambda learning_rate: spec.make(learning_rate, eta_max, True)
  if row_chunks is None:
    devices = min(len(seeds), jax.device_count())
    row_chunks = problems.auto_row_chunks(data.x_train.shape[1], -(-len(seeds) // devices))
  run = make_california_run(name, make_tx, steps=steps,
                            eval_every=eval_every, row_chunks=row_chunks)
  hparams = {k: np.asarray(v, np.float32) for k, v in hparams.items()}
  ((losses, decisions), val, test), seconds = run_arms(
      run, hparams, np.asarray(seeds, np.uint32), shared=data
  )
  val, test = np.asarray(val, float), np.asarray(test, float)
  # A diverged run's validation MSE is nan: it never is the best checkpoint.
  best = np.argmin(np.where(np.isfinite(val), val, np.inf), axis=1)
  best_val_test = np.where(np.isfinite(val).any(1), test[np.arange(len(test)), best], np.nan)
  return CaliforniaRuns(
      losses=np.asarray(losses), val=val, test=test,
      eval_steps=np.arange(1, steps // eval_every + 1) * eval_every,
      final_test=test[:, -1], best_val_test=best_val_test,
      decision=np.asarray(decisions), seconds=seconds,
  )


# ----------------------------------------------------------------------------
# Long runs in compiled chunks: any model, evaluated every `eval_every` steps.


class ChunkedRun(NamedTuple):
  """Results of `train_in_chunks` (numpy arrays)."""

  records: Any  # the step's records, each with a leading (steps,) axis
  evals: Any  # the evaluation's metrics, each with a leading (evals,) axis
  eval_steps: np.ndarray  # (evals,) steps done at each evaluation
  seconds: np.ndarray  # (evals,) wall time since the start, compile excluded
  carry: Any  # the final carry (parameters, optimizer state, ...)


def train_in_chunks(step: Callable, evaluate: Callable, carry: Any, *,
                    steps: int, eval_every: int, shared: Any = (),
                    compiled: dict | None = None) -> ChunkedRun:
  """Runs `step` `steps` times, `evaluate`-ing after every `eval_every`.

  One compiled program runs a chunk: `eval_every` steps in a `lax.scan`,
  then the evaluation, all on the device; the host only starts the next
  chunk and reads the clock, so the wall time at each evaluation (for
  time to a target) costs no round trip per step. The last chunk is shorter
  when `eval_every` does not divide `steps` (a second compilation).

  Args:
    step: `(carry, step_index, shared) -> (carry, record)`, pure; it draws
      its own batch from the index and `shared`.
    evaluate: `(carry, shared) -> metrics` (a pytree of scalars), pure.
    carry: the initial carry.
    steps: the number of training steps.
    eval_every: steps between evaluations.
    shared: the data (and anything else every chunk reads), an argument of
      the compiled chunk rather than a constant closed over, which XLA would
      embed in the program (see `compile_arms`).
    compiled: a dict the compiled chunks are kept in, by length: pass the
      same one to runs of the same `step`, `evaluate` and shapes (the seeds
      of one configuration) to compile them once. The chunks are those of
      the first run: what differs between the runs (a seed's batch key)
      must be in `carry` or `shared`, not closed over by `step`.

  Returns:
    `ChunkedRun`.
  """

  def chunk(carry, first, shared, length):
    carry, records = jax.lax.scan(
        lambda c, i: step(c, i, shared), carry, first + jnp.arange(length))
    return carry, records, evaluate(carry, shared)

  compiled = {} if compiled is None else compiled
  records, evals, eval_steps, seconds = [], [], [], []
  start = time.perf_counter()
  compile_seconds = 0.0
  done = 0
  while done < steps:
    length = min(eval_every, steps - done)
    if length not in compiled:
      tic = time.perf_counter()
      compiled[length] = jax.jit(functools.partial(chunk, length=length)).lower(
          carry, jnp.int32(done), shared).compile()
      compile_seconds += time.perf_counter() - tic
    carry, chunk_records, metrics = jax.block_until_ready(
        compiled[length](carry, jnp.int32(done), shared))
    done += length
    records.append(chunk_records)
    evals.append(metrics)
    eval_steps.append(done)
    seconds.append(time.perf_counter() - start - compile_seconds)
  concat = lambda *xs: np.concatenate([np.asarray(x) for x in xs])
  stack = lambda *xs: np.stack([np.asarray(x) for x in xs])
  return ChunkedRun(
      records=jax.tree.map(concat, *records), evals=jax.tree.map(stack, *evals),
      eval_steps=np.asarray(eval_steps), seconds=np.asarray(seconds),
      carry=carry)


def first_reaching(values: np.ndarray, target: float, at: np.ndarray,
                   higher_is_better: bool = True) -> float:
  """`at` of the first value reaching `target` (nan if none does)."""
  values = np.asarray(values, float)
  hit = values >= target if higher_is_better else values <= target
  return float(at[np.argmax(hit)]) if hit.any() else float("nan")
