"""`zoom`: rounds of a `ZoomingSearch`, each trained in one vmapped program.

Every round asks the search for `arms_per_round` learning rates, trains them
together with one `jax.jit(jax.vmap(train_fn))` call (compiled once for all
rounds), sharded along the arm axis over a mesh's devices when one is given,
tells the rewards, and writes the search's state to a checkpoint file.
"""

import json
import os
import pathlib
import tempfile
from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from optax_exptest._src.zooming_search import ZoomingSearch

TrainFn = Callable[[jax.Array, jax.Array], jax.Array]
_CHECKPOINT_VERSION = 1


def _key_data(key: jax.Array) -> list[int]:
  """The raw bits of a PRNG key (typed or `uint32[2]`), as a list."""
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  return np.asarray(key).reshape(-1).tolist()


def make_round(
    train_fn: TrainFn,
    *,
    arms_per_round: int,
    key: jax.Array,
    mesh: Optional[Mesh] = None,
) -> Callable[[np.ndarray, int], jax.Array]:
  """One round of training: `run(learning_rates, round_index) -> rewards`.

  The arms' PRNG keys are `jax.random.split(jax.random.fold_in(key,
  round_index), arms_per_round)`, derived inside the compiled program, so a
  round's results depend only on `key`, the round index and the rates, and the
  program compiles once for every round. With a `mesh`, the arm axis of the
  rates, keys and rewards is sharded over all the mesh's axes
  (`PartitionSpec(mesh.axis_names)`): `arms_per_round / mesh.size` arms per
  device. The rewards come back as a `jax.Array` with that sharding.

  Args:
    train_fn: `train_fn(learning_rate, key) -> reward`, a pure JAX function of
      a scalar rate and a PRNG key returning a scalar reward.
    arms_per_round: the number of arms trained together.
    key: the search's PRNG key (a closed-over constant).
    mesh: optional `jax.sharding.Mesh`; `arms_per_round` must be a multiple
      of its size.

  Returns:
    `run(learning_rates, round_index)`, learning rates a numpy array of
    shape `(arms_per_round,)`.

  Examples:
    >>> import jax, numpy as np
    >>> from optax_exptest.zooming import make_round
    >>> run = make_round(lambda lr, key: 1 - lr, arms_per_round=2,
    ...                  key=jax.random.PRNGKey(0))
    >>> np.asarray(run(np.array([0.25, 0.5]), 0))
    array([0.75, 0.5 ], dtype=float32)
  """
  _check_positive_int("arms_per_round", arms_per_round)
  k = int(arms_per_round)
  dtype = np.dtype(jnp.result_type(float))
  if mesh is not None and k % mesh.size:
    raise ValueError(
        f"zoom: arms_per_round={k} is not a multiple of the mesh's"
        f" {mesh.size} devices; use a multiple such as"
        f" {mesh.size * max(1, round(k / mesh.size))}, or a smaller mesh."
    )
  if mesh is not None:
    # Auto axes: XLA propagates the arm sharding through `train_fn`, which
    # then needs no sharding annotations (an Explicit-axes mesh, the default
    # of `jax.make_mesh`, would make every op inside it sharding-typed).
    mesh = Mesh(mesh.devices, mesh.axis_names,
                axis_types=(AxisType.Auto,) * len(mesh.axis_names))
    arm_sharding = NamedSharding(mesh, PartitionSpec(mesh.axis_names))
    replicated = NamedSharding(mesh, PartitionSpec())

  def batched(learning_rates, round_index):
    keys = jax.random.split(jax.random.fold_in(key, round_index), k)
    if mesh is not None:
      keys = jax.lax.with_sharding_constraint(keys, arm_sharding)
    return jax.vmap(train_fn)(learning_rates, keys)

  if mesh is None:
    compiled = jax.jit(batched)

    def run(learning_rates: np.ndarray, round_index: int) -> jax.Array:
      # numpy arguments: converting them with jnp would compile small programs.
      return compiled(np.asarray(learning_rates, dtype), np.int32(round_index))

    run.jitted = compiled  # For inspection (lowering, HLO).
    return run

  compiled = jax.jit(
      batched, in_shardings=(arm_sharding, replicated), out_shardings=arm_sharding
  )

  def run_sharded(learning_rates: np.ndarray, round_index: int) -> jax.Array:
    # `make_array_from_callback` builds global arrays on one host or many:
    # every process passes the same rates and places its own shards.
    rates = np.asarray(learning_rates, dtype)
    rates = jax.make_array_from_callback((k,), arm_sharding, lambda i: rates[i])
    index = np.asarray(round_index, np.int32)
    index = jax.make_array_from_callback((), replicated, lambda i: index[i])
    return compiled(rates, index)

  run_sharded.jitted = compiled  # For inspection (lowering, HLO).
  return run_sharded


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> None:
  is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
  if not is_int or value < minimum:
    raise ValueError(
        f"zoom: {name} must be an integer >= {minimum}, got {name}={value!r}."
    )


def _to_host(rewards: jax.Array) -> np.ndarray:
  """All rewards on every process (an all-gather across hosts if needed)."""
  if rewards.is_fully_addressable:
    return np.asarray(rewards)
  return np.asarray(multihost_utils.process_allgather(rewards, tiled=True))


def write_checkpoint(path: Union[str, os.PathLike], state: dict[str, Any]) -> None:
  """Writes `state` as JSON atomically: temp file, fsync, `os.replace`.

  A crash at any point leaves either the previous file or the new one, never
  a partial one; the temporary file is removed when writing fails.

  Args:
    path: the file to write; its folder is created when missing.
    state: a JSON-serialisable dict, e.g. `ZoomingSearch.state_dict()`.

  Examples:
    >>> import json, pathlib, tempfile
    >>> from optax_exptest import ZoomingSearch
    >>> from optax_exptest.zooming import write_checkpoint
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "search.json"
    >>> write_checkpoint(path, ZoomingSearch(0.0, 1.0, horizon=8).state_dict())
    >>> restored = ZoomingSearch.from_state_dict(json.loads(path.read_text()))
    >>> restored.ask(1)
    array([0.5])
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
  try:
    with os.fdopen(fd, "w") as f:
      json.dump(state, f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  try:  # Make the rename itself durable; not possible on every OS.
    dir_fd = os.open(path.parent, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(dir_fd)
  except OSError:
    pass
  finally:
    os.close(dir_fd)


def read_checkpoint(path: Union[str, os.PathLike]) -> dict[str, Any]:
  """Reads a JSON checkpoint, with a clear error when it is damaged.

  Args:
    path: a file written by `write_checkpoint` (e.g. by `zoom`).

  Returns:
    The dict that was written.

  Raises:
    ValueError: naming the file, when it is not valid JSON (corrupt or
      truncated) or does not hold a JSON object.

  Examples:
    >>> import pathlib, tempfile
    >>> from optax_exptest.zooming import read_checkpoint, write_checkpoint
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "search.json"
    >>> write_checkpoint(path, {"a": 1})
    >>> read_checkpoint(path)
    {'a': 1}
    >>> _ = path.write_text('{"a": ')  # truncated
    >>> read_checkpoint(path)
    Traceback (most recent call last):
    ...
    ValueError: checkpoint .../search.json is corrupt or truncated ...
  """
  path = pathlib.Path(path)
  try:
    state = json.loads(path.read_bytes().decode("utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ValueError(
        f"checkpoint {str(path)} is corrupt or truncated (not valid JSON:"
        f" {e}); delete it to start afresh, or restore a backup."
    ) from e
  if not isinstance(state, dict):
    raise ValueError(
        f"checkpoint {str(path)} holds a JSON {type(state).__name__}, not an"
        " object: it was not written by write_checkpoint."
    )
  return state


def _resume(path: pathlib.Path, search: ZoomingSearch, key_data: list[int],
            arms_per_round: int) -> None:
  saved = read_checkpoint(path)
  if not isinstance(saved.get("search"), dict):
    raise ValueError(
        f"zoom: checkpoint {str(path)} has no search state (key 'search');"
        " it was not written by zoom. Pass another checkpoint path."
    )
  meta = saved.get("zoom", {})
  if meta.get("key") != key_data or meta.get("arms_per_round") != arms_per_round:
    raise ValueError(
        f"zoom: the checkpoint {str(path)!r} was written with key data"
        f" {meta.get('key')} and arms_per_round={meta.get('arms_per_round')},"
        f" this call passes {key_data} and {arms_per_round}; the resumed search"
        " would not match an uninterrupted one. Pass the same values, or"
        " another checkpoint path."
    )
  try:
    search.load_state_dict(saved["search"])
  except (KeyError, TypeError, IndexError) as e:
    raise ValueError(
        f"zoom: checkpoint {str(path)} holds an incomplete search state"
        f" ({type(e).__name__}: {e}); delete it to start afresh."
    ) from e


def _progress(progress: bool, total: int, initial: int):
  """A tqdm bar if tqdm is installed, else a printer with the same methods."""
  if not progress or jax.process_index() != 0:
    return None
  try:
    # tqdm.auto picks a Jupyter widget, and warns when ipywidgets is missing;
    # the text bar works everywhere.
    import importlib.util  # pylint: disable=g-import-not-at-top
    if importlib.util.find_spec("ipywidgets") is not None:
      from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
    else:
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  except ImportError:
    return _Printer(total)
  return tqdm(total=total, initial=initial, desc="zoom", unit="round")


class _Printer:
  """Per-round lines when tqdm is missing."""

  def __init__(self, total: int):
    self.total, self.n = total, 0

  def update(self, round_: int, best: tuple[float, float]) -> None:
    print(f"zoom: round {round_}/{self.total}, best learning rate {best[0]:.4g}"
          f" (mean reward {best[1]:.4f})", flush=True)

  def close(self) -> None:
    pass


def zoom(
    train_fn: TrainFn,
    search: ZoomingSearch,
    *,
    rounds: int,
    arms_per_round: int,
    key: jax.Array,
    mesh: Optional[Mesh] = None,
    checkpoint: Optional[Union[str, os.PathLike]] = None,
    progress: bool = True,
) -> ZoomingSearch:
  """Runs a zooming search, each round's arms in one compiled, vmapped call.

  Round `i` asks `search` for `arms_per_round` learning rates, trains them
  with `jax.jit(jax.vmap(train_fn))` (compiled once for all rounds; the arms'
  keys are `jax.random.split(jax.random.fold_in(key, i), arms_per_round)`),
  and tells the rewards. `rounds` is the search's total: rounds already in
  `search` (or in the checkpoint) count, so the same call run again resumes.

  With `mesh`, the arm axis is sharded over all the mesh's devices
  (`NamedSharding(mesh, PartitionSpec(mesh.axis_names))`), and
  `arms_per_round` must be a multiple of `mesh.size` (a `ValueError`
  otherwise; no padding, which would spend devices on arms nobody asked
  for). On several hosts, build the mesh from all devices after
  `jax.distributed.initialize()` and make every process run the same call:
  each trains its own arms and all get all rewards (see
  `docs/distributed.md`).

  With `checkpoint`, a JSON file path, the search state is written
  atomically after every round (temporary file in the same folder, `fsync`,
  `os.replace`; only process 0 writes). If the file exists when `zoom`
  starts, `search` is loaded from it (its arguments must match), and the
  rounds it holds are not run again: a resumed search ends with exactly the
  history of an uninterrupted one. The checkpoint also records the key's bits
  and `arms_per_round`, and resuming with other values is a `ValueError`.
  On several hosts, the path must be on a file system all processes read.

  Args:
    train_fn: `train_fn(learning_rate, key) -> reward`, a pure JAX function:
      trains with a scalar learning rate and returns a scalar reward in
      `[0, 1]`, higher is better (see `optax_exptest.zooming.loss_reward`);
      NaN means diverged and counts as 0. It closes over its data: by
      default JAX compiles closed-over arrays into the program as constants,
      which slows compilation for large datasets; with
      `JAX_USE_SIMPLIFIED_JAXPR_CONSTANTS=1` they are passed as arguments
      (measured in `docs/design.md`, section 7).
    search: the `ZoomingSearch`; updated in place and returned.
    rounds: the total number of rounds of the search.
    arms_per_round: learning rates trained together in each round.
    key: a PRNG key (`jax.random.key` or `jax.random.PRNGKey`).
    mesh: optional `jax.sharding.Mesh` to shard the arms over.
    checkpoint: optional path of a JSON file holding the search.
    progress: show a tqdm bar per round (a printed line per round when tqdm
      is not installed); `False` for silence.

  Returns:
    `search`, after `rounds` rounds: see `search.best` and `search.history`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from optax_exptest import ZoomingSearch, zoom
    >>> def train_fn(learning_rate, key):  # a stand-in for a training run
    ...   return 1 - jnp.abs(learning_rate - 0.3) + 0.01 * jax.random.normal(key)
    >>> search = ZoomingSearch(0.0, 1.0, horizon=32, radius_scale=0.1)
    >>> search = zoom(train_fn, search, rounds=4, arms_per_round=8,
    ...               key=jax.random.key(0), progress=False)
    >>> lr, reward = search.best
    >>> bool(abs(lr - 0.3) < 0.1), len(search.history)
    (True, 32)
  """
  _check_positive_int("rounds", rounds, minimum=0)
  _check_positive_int("arms_per_round", arms_per_round)
  if len(search.pending):
    raise ValueError(
        f"zoom: the search has {len(search.pending)} pulls asked and not told"
        f" ({search.pending.tolist()}); tell them first, or start from a"
        " search without pending pulls."
    )
  key_data = _key_data(key)
  path = None if checkpoint is None else pathlib.Path(checkpoint)
  if path is not None and path.exists():
    _resume(path, search, key_data, arms_per_round)
  if search.num_rounds >= rounds:
    return search

  run = make_round(train_fn, arms_per_round=arms_per_round, key=key, mesh=mesh)
  bar = _progress(progress, rounds, search.num_rounds)
  try:
    while search.num_rounds < rounds:
      index = search.num_rounds
      learning_rates = search.ask(arms_per_round)
      rewards = _to_host(run(learning_rates, index))
      if rewards.shape != (arms_per_round,):
        raise ValueError(
            "zoom: train_fn must return a scalar reward, got rewards of shape"
            f" {rewards.shape[1:]} per arm."
        )
      search.tell(learning_rates, rewards)
      if path is not None and jax.process_index() == 0:
        write_checkpoint(path, dict(
            version=_CHECKPOINT_VERSION, search=search.state_dict(),
            zoom=dict(key=key_data, arms_per_round=arms_per_round),
        ))
      if isinstance(bar, _Printer):
        bar.update(search.num_rounds, search.best)
      elif bar is not None:
        lr, reward = search.best
        bar.set_postfix(best_lr=f"{lr:.4g}", reward=f"{reward:.4f}")
        bar.update(1)
  finally:
    if bar is not None:
      bar.close()
  return search
