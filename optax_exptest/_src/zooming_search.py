"""Zooming search: learning rates as the arms of a Lipschitz bandit.

Priyanka, Kalyani & Chatterjee, "Learning Rate Optimization for Deep Neural
Networks Using Lipschitz Bandits", arXiv 2409.09783, after the zooming
algorithm of Kleinberg, Slivkins & Upfal, "Multi-armed bandits in metric
spaces" (STOC 2008).

The arm space is `[0, 1]`, mapped to learning rates linearly or
log-uniformly. The search keeps a set of active arms, each with a ball of
radius `r(x) = radius_scale * sqrt(2 log T / (n(x) + 1))` around it. Balls
shrink as arms are pulled; wherever they stop covering `[0, 1]` a new arm is
activated, so arms concentrate where the rewards are high. The state is a few
lists of numbers (arms, counts, sums, pending pulls, the random generator's
state): it is plain host-side numpy, and `state_dict` makes it JSON.
"""

import math
from typing import Any, Literal, NamedTuple, Sequence

import numpy as np
import numpy.typing as npt

# Gaps of the covering shorter than this do not count: floating-point
# rounding of `x - r` must not activate spurious arms.
GAP_TOLERANCE = 1e-12
# A told learning rate matches an asked one within this relative tolerance
# (a rate that went through float32 and back still matches).
RATE_TOLERANCE = 1e-5
# The initial covering needs about 1 / (2 r0) arms; refuse absurd ones.
MIN_INITIAL_RADIUS = 1e-5
# Bounds on a round's splits (see `ZoomingSearch._select`).
_MAX_SPLITS = 10_000
_MAX_COUNT = 2**52
_STATE_VERSION = 1
_CONFIG_KEYS = ("low", "high", "scale", "horizon", "radius_scale", "seed")


class Arm(NamedTuple):
  """One active arm of a `ZoomingSearch` (a read-only snapshot).

  Attributes:
    position: the arm in `[0, 1]`.
    learning_rate: the learning rate it stands for.
    pulls: rewards told for it.
    pending: pulls asked and not told yet.
    mean_reward: mean of its told rewards (NaN before the first).
    radius: its confidence radius, counting pending pulls as done.

  Examples:
    >>> from optax_exptest import ZoomingSearch
    >>> search = ZoomingSearch(1e-3, 1e-1, scale="log", horizon=8)
    >>> search.tell(search.ask(1), [0.5])
    >>> arm, = search.arms
    >>> arm.position, round(arm.learning_rate, 6), arm.pulls, arm.mean_reward
    (0.5, 0.01, 1, 0.5)
  """

  position: float
  learning_rate: float
  pulls: int
  pending: int
  mean_reward: float
  radius: float


def _gaps(lows: np.ndarray, highs: np.ndarray) -> list[tuple[float, float]]:
  """The parts of [0, 1] outside all intervals [lows, highs], left to right.

  Gaps shorter than `GAP_TOLERANCE` are left out.
  """
  if lows.size == 0:
    return [(0.0, 1.0)]
  order = np.argsort(lows, kind="stable")
  lo, hi = np.minimum(lows[order], 1.0), highs[order]
  # reach[i]: how far [0, .] is covered by the intervals before the i-th.
  reach = np.maximum(np.concatenate([[0.0], np.maximum.accumulate(hi)[:-1]]), 0.0)
  gaps = [(float(reach[i]), float(lo[i]))
          for i in np.flatnonzero(lo > reach + GAP_TOLERANCE)]
  end = max(float(hi.max()), 0.0)
  if end < 1.0 - GAP_TOLERANCE:
    gaps.append((end, 1.0))
  return gaps


class ZoomingSearch:
  r"""Zooming search over learning rates, one or many pulls per round.

  The arm space `[0, 1]` maps to learning rates `low + x (high - low)`
  (`scale="linear"`, as in the paper) or `low (high / low)^x`
  (`scale="log"`). Each active arm `x` keeps its number of pulls `n(x)` and
  mean reward `mu(x)`; its ball has radius

  .. math::
    r(x) = \mathrm{radius\_scale} \sqrt{2 \log T / (n(x) + 1)},

  `T` the `horizon`. Every pull of `ask` does, in turn:

  1. Activation: while `[0, 1]` is not covered by the closed balls
     `[x - r(x), x + r(x)]`, activate the midpoint of the leftmost uncovered
     gap (gaps shorter than `1e-12` are rounding, not gaps).
  2. Selection: an arm never pulled comes first (uniformly at random among
     such arms, from the search's seeded generator); otherwise the arm with
     the largest index `mu(x) + 2 r(x)` (ties at random).
  3. The chosen arm gets a pending pull. Pending pulls count as done in
     `n(x)` (hallucinated pulls): the ball shrinks and may uncover a gap,
     activated at the next pull. An arm whose rewards are all pending
     borrows `mu` from the nearest arm with a reward (`mu = 1` before any).

  Batched rounds (`k > 1`, or several asks before a tell) keep their arms
  distinct by splitting balls rather than repeating arms. When the largest
  index belongs to an arm already pending, the search lowers a level from
  the top: every pending arm whose index is above the level gets extra
  hallucinated pulls (for this round only) that bring its index down to it.
  The level stops at the first of: the largest index of an arm not pending
  (that arm is chosen), or the index at which a pending arm's shrinking ball
  uncovers a gap next to it (the gap's midpoint is activated and, never
  pulled, chosen). The round's pulls thus go to the arms that classic
  zooming would activate next if the best arms kept winning. Only when no
  pending arm above the level can come down or split (its neighbours cover
  its ball and its mean beats every other index) is an arm pulled again: a
  repeated rate, which `zoom` trains with its own PRNG key, i.e. a fresh
  seed.

  With `k = 1` this is classic zooming. Classic zooming (`radius_scale=1`)
  explores little at small budgets: the first ball has radius
  `sqrt(2 log T) >= 1` and covers everything until it has been pulled about
  `8 log T` times. The paper divides the radius by 10 for ReLU networks
  (`radius_scale=0.1`), which is also the better choice for small budgets.

  Rewards should lie in `[0, 1]`, higher is better (see
  `optax_exptest.zooming.loss_curve_reward` and `accuracy_reward`). Finite
  rewards are clipped to `[0, 1]` (noisy rewards near the ends stay usable;
  the Lipschitz index assumes bounded rewards); NaN and infinite rewards
  count as `0`, the worst, as a diverged run should.

  Args:
    low: the smallest learning rate (arm 0).
    high: the largest learning rate (arm 1); `high > low`.
    scale: `"linear"` or `"log"` (then `low > 0`).
    horizon: `T`, the total number of pulls planned; it sets the radius only
      (more pulls may be asked; the radius keeps shrinking).
    radius_scale: the factor on the radius; smaller activates more arms and
      explores more finely. It sets how far a reward is trusted to carry in
      arm space: the paper's 0.1 is for a linear range; over a log range of
      several decades rewards can change much faster per unit of arm space
      (a divergence cliff), and a smaller value (e.g. 0.03) explores finer.
    seed: seed of the generator that breaks ties (which never-pulled arm
      first). The generator's state is part of `state_dict`.

  Examples:
    >>> import numpy as np
    >>> from optax_exptest import ZoomingSearch
    >>> search = ZoomingSearch(0.0, 1.0, horizon=64, radius_scale=0.1)
    >>> for _ in range(16):
    ...   lrs = search.ask(4)
    ...   search.tell(lrs, 1 - np.abs(lrs - 0.37))
    >>> lr, reward = search.best
    >>> bool(abs(lr - 0.37) < 0.05)
    True

  References:
    Priyanka, Kalyani & Chatterjee, "Learning Rate Optimization for Deep
    Neural Networks Using Lipschitz Bandits", arXiv 2409.09783, 2024.

    Kleinberg, Slivkins & Upfal, "Multi-armed bandits in metric spaces",
    STOC 2008 (and "Bandits and experts in metric spaces", JACM 2019).
  """

  def __init__(
      self,
      low: float,
      high: float,
      *,
      scale: Literal["linear", "log"] = "linear",
      horizon: int,
      radius_scale: float = 1.0,
      seed: int = 0,
  ):
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
      raise ValueError(
          f"ZoomingSearch: need finite low < high, got low={low!r},"
          f" high={high!r}; pass the smallest and the largest learning rate"
          " to search, in that order."
      )
    if scale not in ("linear", "log"):
      raise ValueError(
          f"ZoomingSearch: scale must be 'linear' or 'log', got scale={scale!r}."
      )
    if scale == "log" and low <= 0:
      raise ValueError(
          f"ZoomingSearch: scale='log' needs low > 0, got low={low!r}; pass a"
          " positive smallest rate (e.g. 1e-3 times the largest) or use"
          " scale='linear'."
      )
    if isinstance(horizon, bool) or int(horizon) != horizon or horizon < 2:
      raise ValueError(
          f"ZoomingSearch: horizon must be an integer >= 2 (the total number"
          f" of pulls planned), got horizon={horizon!r}."
      )
    radius_scale = float(radius_scale)
    if not (math.isfinite(radius_scale) and radius_scale > 0):
      raise ValueError(
          "ZoomingSearch: radius_scale must be a positive number, got"
          f" radius_scale={radius_scale!r}."
      )
    r0 = radius_scale * math.sqrt(2 * math.log(horizon))
    if r0 < MIN_INITIAL_RADIUS:
      raise ValueError(
          f"ZoomingSearch: radius_scale={radius_scale!r} with"
          f" horizon={horizon!r} gives a first radius of {r0:.3g}; covering"
          f" [0, 1] would take about {0.5 / r0:.3g} arms. Use a radius_scale"
          f" of at least {MIN_INITIAL_RADIUS / math.sqrt(2 * math.log(horizon)):.3g}."
      )
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
      raise ValueError(
          f"ZoomingSearch: seed must be a non-negative integer, got seed={seed!r}."
      )
    self._low, self._high, self._scale = low, high, scale
    self._horizon, self._radius_scale = int(horizon), radius_scale
    self._seed = int(seed)
    self._log_t = math.log(self._horizon)
    self._rng = np.random.default_rng(self._seed)
    self._positions: list[float] = []
    self._counts: list[int] = []
    self._sums: list[float] = []
    self._pending: list[tuple[int, int]] = []  # (arm index, round asked)
    self._history: list[dict[str, Any]] = []
    self._num_rounds = 0

  # Configuration and read-only views.

  @property
  def config(self) -> dict[str, Any]:
    """The constructor's arguments, as a dict."""
    return dict(
        low=self._low, high=self._high, scale=self._scale,
        horizon=self._horizon, radius_scale=self._radius_scale, seed=self._seed,
    )

  @property
  def num_rounds(self) -> int:
    """The number of `ask` calls so far (rounds), told or not."""
    return self._num_rounds

  @property
  def num_pulls(self) -> int:
    """The number of rewards told so far."""
    return len(self._history)

  @property
  def pending(self) -> np.ndarray:
    """Learning rates asked and not told yet, in the order asked."""
    positions = [self._positions[a] for a, _ in self._pending]
    return self.learning_rate(np.asarray(positions, dtype=np.float64))

  @property
  def history(self) -> list[dict[str, Any]]:
    """Every pull told, in order, as dicts (a copy).

    Keys: `round` (the `ask` call it came from, from 0), `arm` (position in
    `[0, 1]`), `learning_rate`, `reward` (as used: clipped to `[0, 1]`, non-finite
    -> 0) and `finite` (whether the reward told was finite).
    """
    return [dict(h) for h in self._history]

  @property
  def arms(self) -> list[Arm]:
    """The active arms, in the order they were activated."""
    n_eff = self._effective_counts()
    radii = self.radius(n_eff)
    return [
        Arm(
            position=x,
            learning_rate=float(self.learning_rate(x)),
            pulls=n,
            pending=int(n_eff[i] - n),
            mean_reward=s / n if n else math.nan,
            radius=float(radii[i]),
        )
        for i, (x, n, s) in enumerate(zip(self._positions, self._counts, self._sums))
    ]

  @property
  def best(self) -> tuple[float, float]:
    """`(learning_rate, mean_reward)` of the arm with the best mean reward.

    Among arms with at least one reward told; ties go to the arm with more
    pulls, then the one activated first.

    Raises:
      RuntimeError: before the first `tell`.
    """
    if not self._history:
      raise RuntimeError(
          "ZoomingSearch.best: no reward has been told yet; call ask() and"
          " tell() (or zoom()) first."
      )
    candidates = [
        (s / n, n, -i) for i, (n, s) in enumerate(zip(self._counts, self._sums)) if n
    ]
    mean, _, neg_i = max(candidates)
    return float(self.learning_rate(self._positions[-neg_i])), float(mean)

  def learning_rate(self, position: npt.ArrayLike) -> np.ndarray:
    """Maps arm positions in `[0, 1]` to learning rates."""
    x = np.asarray(position, dtype=np.float64)
    if self._scale == "log":
      return np.exp(math.log(self._low) + x * math.log(self._high / self._low))
    return self._low + x * (self._high - self._low)

  def radius(self, pulls: npt.ArrayLike) -> np.ndarray:
    """`radius_scale * sqrt(2 log T / (pulls + 1))`."""
    n = np.asarray(pulls, dtype=np.float64)
    return self._radius_scale * np.sqrt(2 * self._log_t / (n + 1))

  # The algorithm.

  def _effective_counts(self) -> np.ndarray:
    """Told pulls plus pending pulls, per arm."""
    n = np.asarray(self._counts, dtype=np.int64)
    for arm, _ in self._pending:
      n[arm] += 1
    return n

  def _cover(self, n_eff: np.ndarray) -> np.ndarray:
    """Activates arms until the balls cover [0, 1]; returns the new counts."""
    x = np.asarray(self._positions, dtype=np.float64)
    r = self.radius(n_eff)
    while gaps := _gaps(x - r, x + r):
      mid = 0.5 * (gaps[0][0] + gaps[0][1])
      self._positions.append(mid)
      self._counts.append(0)
      self._sums.append(0.0)
      x, n_eff = np.append(x, mid), np.append(n_eff, 0)
      r = np.append(r, self.radius(0))
    return n_eff

  def _means(self) -> np.ndarray:
    """`mu(x)`; an arm without rewards borrows its nearest told neighbour's."""
    counts = np.asarray(self._counts, dtype=np.float64)
    sums = np.asarray(self._sums, dtype=np.float64)
    told = counts > 0
    mu = np.ones_like(sums)
    mu[told] = sums[told] / counts[told]
    if told.any() and not told.all():
      x = np.asarray(self._positions)
      nearest = np.abs(x[~told, None] - x[None, told]).argmin(axis=1)
      mu[~told] = mu[told][nearest]
    return mu

  def _argmax(self, values: np.ndarray, among: np.ndarray) -> int:
    """The index in `among` of the largest value, ties at random."""
    top = among[values[among] >= values[among].max()]
    return int(top[0] if top.size == 1 else self._rng.choice(top))

  def _exclusive_reach(self, arm: int, x: np.ndarray, r: np.ndarray) -> float:
    """How far from `arm` the points only its ball covers reach (0: none)."""
    others = np.arange(x.size) != arm
    gaps = _gaps(x[others] - r[others], x[others] + r[others])
    return max((max(abs(a - x[arm]), abs(b - x[arm])) for a, b in gaps), default=0.0)

  def _pulls_below(self, radius: float, n: int) -> int:
    """Hallucinated pulls that take an arm with `n` pulls below `radius`."""
    c2 = self._radius_scale**2 * 2 * self._log_t  # r(n)^2 = c2 / (n + 1)
    if radius <= 0:
      return _MAX_COUNT
    return int(min(max(math.floor(c2 / radius**2 - n - 1) + 1, 1), _MAX_COUNT))

  def _select(self, virtual: list[int]) -> int:
    """Chooses one arm (activating as needed) and marks it pending.

    `virtual` holds the round's extra hallucinated pulls from splits, per arm.
    """
    for _ in range(_MAX_SPLITS):
      pulled = self._effective_counts()
      virtual.extend([0] * (pulled.size - len(virtual)))
      n_eff = self._cover(pulled + np.asarray(virtual, np.int64))
      virtual.extend([0] * (n_eff.size - len(virtual)))
      pulled = np.append(pulled, np.zeros(n_eff.size - pulled.size, np.int64))
      fresh = np.flatnonzero(pulled == 0)
      if fresh.size:
        choice = int(self._rng.choice(fresh))
        break
      mu, x, r = self._means(), np.asarray(self._positions), self.radius(n_eff)
      index = mu + 2 * r
      pending = pulled > np.asarray(self._counts)
      free_level = index[~pending].max() if (~pending).any() else -math.inf
      if free_level >= index.max():
        choice = self._argmax(index, np.flatnonzero(~pending))
        break
      # Split: lower the level from the top; pending arms above it get
      # hallucinated pulls, until a non-pending arm's index or an uncovered
      # gap is reached.
      level, opener, reach = free_level, -1, 0.0
      for b in np.flatnonzero(pending & (index > free_level)):
        d = self._exclusive_reach(b, x, r)
        if d > 0 and mu[b] + 2 * d > level:
          level, opener, reach = mu[b] + 2 * d, b, d
      above = pending & (index > level)
      if opener >= 0:
        above[opener] = True
      lowered = [b for b in np.flatnonzero(above) if b == opener or mu[b] < level]
      if not lowered:
        choice = self._argmax(index, np.flatnonzero(above))
        break  # nothing can be split: repeat the arm, with a fresh seed
      for b in lowered:
        target = reach if b == opener else (level - mu[b]) / 2
        virtual[b] = min(virtual[b] + self._pulls_below(target, n_eff[b]), _MAX_COUNT)
    else:  # Not reached in practice: a bound on the loop, not a rule.
      index = self._means() + 2 * self.radius(n_eff)
      choice = self._argmax(index, np.arange(n_eff.size))
    self._pending.append((choice, self._num_rounds))
    return choice

  def ask(self, k: int = 1) -> np.ndarray:
    """Chooses the learning rates of the next round.

    Args:
      k: the number of pulls (training runs) in the round, `k >= 1`.

    Returns:
      A float64 array of `k` learning rates, distinct unless a ball cannot
      be split (see the class docstring). They stay pending until told.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
      raise ValueError(
          f"ZoomingSearch.ask: k must be an integer >= 1 (pulls in the round),"
          f" got k={k!r}."
      )
    virtual: list[int] = []
    arms = [self._select(virtual) for _ in range(int(k))]
    # The last pull's ball shrank too: keep [0, 1] covered between rounds.
    self._cover(self._effective_counts())
    self._num_rounds += 1
    return self.learning_rate(np.asarray([self._positions[a] for a in arms]))

  def tell(self, learning_rates: npt.ArrayLike, rewards: npt.ArrayLike) -> None:
    """Records the rewards of pending pulls.

    Pulls may be told in any order and in several calls; each learning rate
    must be one asked and not yet told (matched within a relative `1e-5`, so
    float32 copies match). Nothing is recorded unless all are valid.

    Args:
      learning_rates: 1-D, the rates as returned by `ask`.
      rewards: 1-D, same length, in `[0, 1]`, higher is better; finite values
        are clipped to `[0, 1]`, NaN or infinite ones count as 0 (a diverged
        run).

    Raises:
      ValueError: on mismatched lengths or a rate that is not pending.
    """
    lrs = np.asarray(learning_rates, dtype=np.float64)
    values = np.asarray(rewards, dtype=np.float64)
    if lrs.ndim != 1 or values.shape != lrs.shape:
      raise ValueError(
          "ZoomingSearch.tell: learning_rates and rewards must be 1-D of the"
          f" same length, got shapes {lrs.shape} and {values.shape}; pass one"
          " reward per learning rate returned by ask()."
      )
    finite = np.isfinite(values)
    values = np.where(finite, np.clip(values, 0.0, 1.0), 0.0)

    open_pulls = list(range(len(self._pending)))
    open_rates = self.learning_rate(
        np.asarray([self._positions[a] for a, _ in self._pending])
    )
    matched = []
    for lr in lrs:
      if open_pulls:
        rates = open_rates[open_pulls]
        j = int(np.argmin(np.abs(rates - lr)))
        if abs(rates[j] - lr) <= RATE_TOLERANCE * abs(rates[j]) + GAP_TOLERANCE * (
            self._high - self._low
        ):
          matched.append(open_pulls.pop(j))
          continue
      raise ValueError(
          f"ZoomingSearch.tell: learning rate {lr!r} was not asked, or was"
          f" already told; pending rates are {self.pending.tolist()}. Tell"
          " the rates returned by ask()."
      )
    for p, reward, ok in zip(matched, values, finite):
      arm, round_ = self._pending[p]
      self._counts[arm] += 1
      self._sums[arm] += float(reward)
      self._history.append(dict(
          round=round_, arm=self._positions[arm],
          learning_rate=float(open_rates[p]), reward=float(reward), finite=bool(ok),
      ))
    done = set(matched)
    self._pending = [p for i, p in enumerate(self._pending) if i not in done]

  # Checkpoints.

  def state_dict(self) -> dict[str, Any]:
    """The whole search as JSON-serialisable Python values.

    `ZoomingSearch.from_state_dict(json.loads(json.dumps(d)))` asks exactly
    what this search would: the random generator's state is included, and so
    are pending pulls.
    """
    return dict(
        version=_STATE_VERSION,
        config=self.config,
        positions=list(self._positions),
        counts=list(self._counts),
        sums=list(self._sums),
        pending=[list(p) for p in self._pending],
        num_rounds=self._num_rounds,
        history=self.history,
        rng=self._rng.bit_generator.state,
    )

  def load_state_dict(self, state: dict[str, Any]) -> None:
    """Restores `state_dict()` in place; the configuration must match.

    Raises:
      ValueError: when the state comes from a search with other arguments.
    """
    if state.get("version") != _STATE_VERSION:
      raise ValueError(
          f"ZoomingSearch.load_state_dict: unknown state version"
          f" {state.get('version')!r}, expected {_STATE_VERSION}."
      )
    diff = {
        k: (state["config"][k], v) for k, v in self.config.items()
        if state["config"].get(k) != v
    }
    if diff:
      raise ValueError(
          "ZoomingSearch.load_state_dict: the state was saved by a search"
          " with other arguments (saved, this one): "
          + ", ".join(f"{k}={a!r} vs {b!r}" for k, (a, b) in diff.items())
          + ". Use ZoomingSearch.from_state_dict, or a fresh checkpoint."
      )
    self._positions = [float(x) for x in state["positions"]]
    self._counts = [int(n) for n in state["counts"]]
    self._sums = [float(s) for s in state["sums"]]
    self._pending = [(int(a), int(r)) for a, r in state["pending"]]
    self._num_rounds = int(state["num_rounds"])
    self._history = [dict(h) for h in state["history"]]
    rng = np.random.default_rng()
    rng.bit_generator.state = state["rng"]
    self._rng = rng

  @classmethod
  def from_state_dict(cls, state: dict[str, Any]) -> "ZoomingSearch":
    """A search restored from `state_dict()` (e.g. after `json.load`).

    Examples:
      >>> import json
      >>> a = ZoomingSearch(1e-4, 1.0, scale="log", horizon=16, radius_scale=0.1)
      >>> _ = a.ask(2)
      >>> b = ZoomingSearch.from_state_dict(json.loads(json.dumps(a.state_dict())))
      >>> bool((a.ask(3) == b.ask(3)).all())
      True
    """
    search = cls(**{k: state["config"][k] for k in _CONFIG_KEYS})
    search.load_state_dict(state)
    return search

  def __repr__(self) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
    return (
        f"ZoomingSearch({args}; {len(self._positions)} arms,"
        f" {self.num_pulls} pulls, {len(self._pending)} pending)"
    )


def covers_unit_interval(positions: Sequence[float], radii: Sequence[float]) -> bool:
  """Whether the closed balls `[x - r, x + r]` cover `[0, 1]` (up to 1e-12).

  Args:
    positions: the balls' centres in `[0, 1]`.
    radii: their radii, one per centre.

  Returns:
    True when every point of `[0, 1]` lies in some ball.

  Examples:
    >>> from optax_exptest.zooming import covers_unit_interval
    >>> covers_unit_interval([0.25, 0.75], [0.25, 0.25])
    True
    >>> covers_unit_interval([0.25, 0.75], [0.2, 0.25])
    False
  """
  x, r = np.asarray(positions, np.float64), np.asarray(radii, np.float64)
  return not _gaps(x - r, x + r)
