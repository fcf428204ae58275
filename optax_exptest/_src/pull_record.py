"""The record of a zooming search's pulls, and its versioned save and load.

A `PullRecord` is everything a `ZoomingSearch` has learnt and asked: the
active arms (positions in `[0, 1]`), each arm's told pulls and reward sum,
the pending pulls, the history of told rewards, and the random generator
that breaks ties. It is plain host-side numpy and Python lists, and
`state_dict` makes it JSON. The variants (`zooming_variants`) read it and
add arms and pending pulls to it; the search tells rewards to it.

Saved states carry a version: 2 (current) has the variant in the
configuration and an id for every pull; 1 was classic zooming without pull
ids, and still loads.
"""

from typing import Any, NamedTuple, Sequence

import numpy as np

STATE_VERSION = 2  # 1: no variant (classic) and no pull ids
KNOWN_VERSIONS = (1, STATE_VERSION)


class PendingPull(NamedTuple):
  """A pull asked and not told yet.

  Attributes:
    arm: the index of its arm in `PullRecord.positions`.
    round: the `ask` call it came from, from 0.
    id: its id, unique within the search.
  """

  arm: int
  round: int
  id: int


class PullRecord:
  """The arms, pulls and rewards of a zooming search (mutable).

  Attributes:
    positions: the active arms in `[0, 1]`, in the order activated.
    counts: told pulls per arm.
    sums: the sum of told rewards per arm.
    pending: `PendingPull`s, in the order asked.
    next_id: the id of the next pull asked.
    num_rounds: the rounds (`ask` or `record` calls) so far.
    history: the told pulls, in order, as dicts.
    rng: the generator that breaks ties.

  Examples:
    >>> from optax_exptest._src.pull_record import PullRecord
    >>> record = PullRecord(seed=0)
    >>> arm = record.activate(0.5)
    >>> pull_id = record.add_pending(arm)
    >>> record.tell_pending([0], np.array([0.7]), np.array([0.01]))
    >>> record.counts, record.sums, record.history[0]["pull"]
    ([1], [0.7], 0)
  """

  def __init__(self, seed: int):
    self.positions: list[float] = []
    self.counts: list[int] = []
    self.sums: list[float] = []
    self.pending: list[PendingPull] = []
    self.next_id = 0
    self.num_rounds = 0
    self.history: list[dict[str, Any]] = []
    self.rng = np.random.default_rng(seed)

  def activate(self, position: float) -> int:
    """Adds an arm at `position`, never pulled; returns its index."""
    self.positions.append(float(position))
    self.counts.append(0)
    self.sums.append(0.0)
    return len(self.positions) - 1

  def add_pending(self, arm: int) -> int:
    """Adds a pending pull of `arm` in the current round; returns its id."""
    self.pending.append(PendingPull(arm, self.num_rounds, self.next_id))
    self.next_id += 1
    return self.next_id - 1

  def effective_counts(self) -> np.ndarray:
    """Told pulls plus pending pulls, per arm (int64)."""
    n = np.asarray(self.counts, dtype=np.int64)
    for pull in self.pending:
      n[pull.arm] += 1
    return n

  def means(self) -> np.ndarray:
    """`mu(x)`; an arm without rewards borrows its nearest told neighbour's.

    Returns:
      The mean reward per arm; `1` (optimism) for every arm before any
      reward is told.
    """
    counts = np.asarray(self.counts, dtype=np.float64)
    sums = np.asarray(self.sums, dtype=np.float64)
    told = counts > 0
    mu = np.ones_like(sums)
    mu[told] = sums[told] / counts[told]
    if told.any() and not told.all():
      x = np.asarray(self.positions)
      nearest = np.abs(x[~told, None] - x[None, told]).argmin(axis=1)
      mu[~told] = mu[told][nearest]
    return mu

  def tell_pending(self, indices: list[int], rewards: np.ndarray,
                   learning_rates: Sequence[float]) -> None:
    """Tells rewards to the pending pulls at `indices` of `pending`.

    Args:
      indices: positions in `pending`, each at most once.
      rewards: one reward per index; finite ones are clipped to `[0, 1]`,
        others count as `0` (a diverged run).
      learning_rates: the rate of each pull, for the history.
    """
    finite = np.isfinite(rewards)
    rewards = np.where(finite, np.clip(rewards, 0.0, 1.0), 0.0)
    for p, reward, rate, ok in zip(indices, rewards, learning_rates, finite):
      arm, round_, pull_id = self.pending[p]
      self.counts[arm] += 1
      self.sums[arm] += float(reward)
      self.history.append(dict(
          pull=pull_id, round=round_, arm=self.positions[arm],
          learning_rate=float(rate), reward=float(reward), finite=bool(ok),
      ))
    done = set(indices)
    self.pending = [p for i, p in enumerate(self.pending) if i not in done]

  # Save and load.

  def state_dict(self, config: dict[str, Any]) -> dict[str, Any]:
    """The record and the search's `config` as JSON-serialisable values."""
    return dict(
        version=STATE_VERSION,
        config=dict(config),
        positions=list(self.positions),
        counts=list(self.counts),
        sums=list(self.sums),
        pending=[list(p) for p in self.pending],
        next_id=self.next_id,
        num_rounds=self.num_rounds,
        history=[dict(h) for h in self.history],
        rng=self.rng.bit_generator.state,
    )

  @classmethod
  def from_state_dict(cls, state: dict[str, Any]) -> "PullRecord":
    """The record of a state saved by `state_dict` (any known version).

    Args:
      state: as returned by `state_dict`, e.g. after a JSON round trip.

    Returns:
      The record; its generator continues where the saved one stopped.

    Raises:
      ValueError: on an unknown version.
    """
    check_version(state)
    record = cls(seed=0)
    record.positions = [float(x) for x in state["positions"]]
    record.counts = [int(n) for n in state["counts"]]
    record.sums = [float(s) for s in state["sums"]]
    record.history = [dict(h) for h in state["history"]]
    # Version 1 had no pull ids: a pending pull's id is its place in line,
    # and the next id follows them (told pulls had none).
    record.pending = [
        PendingPull(int(p[0]), int(p[1]), int(p[2]) if len(p) > 2 else i)
        for i, p in enumerate(state["pending"])
    ]
    record.next_id = int(state.get("next_id", len(record.pending)))
    record.num_rounds = int(state["num_rounds"])
    record.rng = np.random.default_rng()
    record.rng.bit_generator.state = state["rng"]
    return record


def check_version(state: dict[str, Any]) -> None:
  """Raises a `ValueError` unless `state` has a version this code loads."""
  if state.get("version") not in KNOWN_VERSIONS:
    raise ValueError(
        f"ZoomingSearch.load_state_dict: unknown state version"
        f" {state.get('version')!r}, expected {STATE_VERSION}."
    )


def saved_config(state: dict[str, Any]) -> dict[str, Any]:
  """The configuration of a saved state; version 1 was classic zooming.

  Args:
    state: as returned by `PullRecord.state_dict`.

  Returns:
    The search's constructor arguments, with `variant` filled in for
    version 1.
  """
  config = dict(state["config"])
  if state.get("version") == 1:
    config.setdefault("variant", "classic")
  return config
