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
from typing import Any, Literal, NamedTuple, Optional, Sequence

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
_STATE_VERSION = 2  # 1: no variant (classic) and no pull ids
_CONFIG_KEYS = ("low", "high", "scale", "horizon", "radius_scale", "variant", "seed")
VARIANTS = ("spread", "classic")


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


class Pull(NamedTuple):
  """One pull asked by `ZoomingSearch.ask_pulls`: tell its reward by its id.

  Attributes:
    id: the pull's id, unique within the search (0, 1, 2, ... in the order
      asked); `tell` accepts it, or the `Pull` itself.
    learning_rate: the rate to train with.
    round: the `ask` call it came from, from 0.

  Examples:
    >>> from optax_exptest import ZoomingSearch
    >>> search = ZoomingSearch(1e-3, 1e-1, scale="log", horizon=8)
    >>> pull, = search.ask_pulls(1)
    >>> pull.id, round(pull.learning_rate, 6), pull.round
    (0, 0.01, 0)
    >>> search.tell([pull], [0.5])
    >>> search.history[0]["pull"], search.num_pulls
    (0, 1)
  """

  id: int
  learning_rate: float
  round: int


def default_radius_scale(horizon: int, variant: str = "spread") -> float:
  r"""The `radius_scale` a `ZoomingSearch` uses when none is given.

  Classic: `1`, the radius of Kleinberg, Slivkins & Upfal (the paper's
  Algorithm 1; the paper divides it by 10 for ReLU networks). Spread:

  .. math::
    c(T) = \frac{1}{T \sqrt{\log T}},

  the scale at which an arm pulled once has radius `r(1) = 1 / T`: covering
  `[0, 1]` with such balls takes `T / 2` arms, so about half the budget
  covers the range once and the other half zooms in (the first batched
  round is the grid of its arms, see `ZoomingSearch`).

  Args:
    horizon: `T`, the planned number of pulls, `>= 2`.
    variant: `"spread"` or `"classic"`.

  Returns:
    The radius scale.

  Examples:
    >>> from optax_exptest.zooming import default_radius_scale
    >>> round(default_radius_scale(10), 4), default_radius_scale(10, "classic")
    (0.0659, 1.0)
  """
  if variant == "classic":
    return 1.0
  return 1.0 / (horizon * math.sqrt(math.log(horizon)))


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

  `T` the `horizon`. Two variants share this radius and the index
  `mu(x) + 2 r(x)`.

  **Spread** (`variant="spread"`, the default) is built for the budgets
  people use, 3 to 30 pulls, one or many a round, where the best rate found
  is what counts:

  1. A first round of `k > 1` pulls is the grid of `k` cell midpoints
     `(i + 1/2) / k`; a first single pull is the midpoint.
  2. Arms are activated only when pulled. While the balls of the pulled and
     pending arms leave a gap wider than `r(1)` (the ball of an arm pulled
     once), the next pull is the midpoint of the widest gap.
  3. Then the next pull is the point `y` of largest optimistic value
     `U(y) = min(mu(x) + 2 |y - x|)` over the arms `x` whose ball holds `y`:
     the zooming index of a ball's edge, carried inside the ball by the
     Lipschitz bound (Piyavskii and Shubert's rule, within the balls the
     radius trusts). It is a new rate next to the best arms, or at the edge
     of a poor arm's ball, never a repeat unless the best point is an arm.
     Pending pulls take part with the mean of the nearest told arm, so a
     batched round spreads its arms.

  The default `radius_scale` (`default_radius_scale`) gives an arm pulled
  once the radius `1 / T`: covering `[0, 1]` takes about `T / 2` pulls, and
  the rest zoom in.

  **Classic** (`variant="classic"`) is the zooming algorithm of Kleinberg,
  Slivkins & Upfal as the paper uses it (its default `radius_scale=1`; the
  paper's ReLU setting is `radius_scale=0.1`). Every pull of `ask` does, in
  turn:

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

  With `k = 1` this is classic zooming, which explores little at small
  budgets: at `radius_scale=1` the first ball has radius `sqrt(2 log T) >= 1`
  and covers everything until it has been pulled about `8 log T` times.

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
      explores more finely. `None`: `default_radius_scale(horizon, variant)`. It sets how far a reward is trusted to carry in
      arm space: the paper's 0.1 is for a linear range; over a log range of
      several decades rewards can change much faster per unit of arm space
      (a divergence cliff), and a smaller value (e.g. 0.03) explores finer.
    variant: `"spread"` (the default) or `"classic"`, see above.
    seed: seed of the generator that breaks ties (which never-pulled arm
      first). The generator's state is part of `state_dict`.

  Examples:
    >>> import numpy as np
    >>> from optax_exptest import ZoomingSearch
    >>> search = ZoomingSearch(0.0, 1.0, horizon=12)
    >>> for _ in range(3):
    ...   lrs = search.ask(4)
    ...   search.tell(lrs, 1 - np.abs(lrs - 0.37))
    >>> lr, reward = search.best
    >>> bool(abs(lr - 0.37) < 0.05)
    True
    >>> classic = ZoomingSearch(0.0, 1.0, horizon=64, radius_scale=0.1,
    ...                         variant="classic")  # the paper's ReLU setting

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
      radius_scale: Optional[float] = None,
      variant: Literal["spread", "classic"] = "spread",
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
    if variant not in VARIANTS:
      raise ValueError(
          f"ZoomingSearch: variant must be 'spread' or 'classic', got"
          f" variant={variant!r}."
      )
    config_radius_scale = radius_scale
    if radius_scale is None:
      radius_scale = default_radius_scale(horizon, variant)
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
    self._config_radius_scale = (
        None if config_radius_scale is None else radius_scale)
    self._variant = variant
    self._seed = int(seed)
    self._log_t = math.log(self._horizon)
    self._rng = np.random.default_rng(self._seed)
    self._positions: list[float] = []
    self._counts: list[int] = []
    self._sums: list[float] = []
    # (arm index, round asked, pull id), in the order asked.
    self._pending: list[tuple[int, int, int]] = []
    self._next_id = 0
    self._history: list[dict[str, Any]] = []
    self._num_rounds = 0

  # Configuration and read-only views.

  @property
  def config(self) -> dict[str, Any]:
    """The constructor's arguments, as a dict."""
    return dict(
        low=self._low, high=self._high, scale=self._scale,
        horizon=self._horizon, radius_scale=self._config_radius_scale,
        variant=self._variant, seed=self._seed,
    )

  @property
  def radius_scale(self) -> float:
    """The factor on the radius in use (`default_radius_scale` when unset)."""
    return self._radius_scale

  @property
  def variant(self) -> str:
    """`"spread"` (the default) or `"classic"` (Kleinberg et al.'s rules)."""
    return self._variant

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
    positions = [self._positions[a] for a, _, _ in self._pending]
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
      rate = np.exp(math.log(self._low) + x * math.log(self._high / self._low))
    else:
      rate = self._low + x * (self._high - self._low)
    return np.clip(rate, self._low, self._high)  # no rounding past the ends

  def radius(self, pulls: npt.ArrayLike) -> np.ndarray:
    """`radius_scale * sqrt(2 log T / (pulls + 1))`."""
    n = np.asarray(pulls, dtype=np.float64)
    return self._radius_scale * np.sqrt(2 * self._log_t / (n + 1))

  # The algorithm.

  def _effective_counts(self) -> np.ndarray:
    """Told pulls plus pending pulls, per arm."""
    n = np.asarray(self._counts, dtype=np.int64)
    for arm, _, _ in self._pending:
      n[arm] += 1
    return n

  def _add_pending(self, arm: int) -> None:
    self._pending.append((arm, self._num_rounds, self._next_id))
    self._next_id += 1

  def _activate(self, position: float) -> None:
    self._positions.append(float(position))
    self._counts.append(0)
    self._sums.append(0.0)

  def _cover(self, n_eff: np.ndarray) -> np.ndarray:
    """Activates arms until the balls cover [0, 1]; returns the new counts.

    Classic: the midpoint of the leftmost gap, one arm at a time. Spread:
    each gap gets the fewest fresh balls that cover it, at the midpoints of
    equal cells (a gap `[0, 1]` of the first round becomes a grid).
    """
    x = np.asarray(self._positions, dtype=np.float64)
    r = self.radius(n_eff)
    r0 = float(self.radius(0))
    while gaps := _gaps(x - r, x + r):
      if self._variant == "classic":
        new = [0.5 * (gaps[0][0] + gaps[0][1])]
      else:
        new = []
        for a, b in gaps:
          n = max(1, math.ceil((b - a) / (2 * r0) - 1e-9))
          new += [a + (i + 0.5) * (b - a) / n for i in range(n)]
      for mid in new:
        self._activate(mid)
      x = np.append(x, new)
      n_eff = np.append(n_eff, np.zeros(len(new), np.int64))
      r = np.append(r, np.full(len(new), r0))
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
    return abs(self._exclusive_far_point(arm, x, r) - x[arm])

  def _exclusive_far_point(self, arm: int, x: np.ndarray, r: np.ndarray) -> float:
    """The point only `arm`'s ball covers that is farthest from it (or it)."""
    others = np.arange(x.size) != arm
    gaps = _gaps(x[others] - r[others], x[others] + r[others])
    ends = [e for gap in gaps for e in gap]
    if not ends:
      return float(x[arm])
    return float(max(ends, key=lambda e: abs(e - x[arm])))

  def _optimistic(self, y: np.ndarray, mu: np.ndarray, x: np.ndarray,
                  r: np.ndarray) -> np.ndarray:
    """`U(y)`: the least `mu(x) + 2 |y - x|` over the balls holding `y`."""
    dist = np.abs(y[:, None] - x[None, :])
    cone = mu[None, :] + 2 * dist
    inside = np.where(dist <= r[None, :], cone, np.inf).min(axis=1)
    # Points of gaps too narrow to count: the nearest cone.
    return np.where(np.isfinite(inside), inside, cone.min(axis=1))

  def _spread_next(self, n_eff: np.ndarray) -> int:
    """Spread: the arm of the next pull (activated when new).

    Arms are only activated when pulled. While the balls of the pulled (and
    pending) arms leave `[0, 1]` uncovered, the midpoint of the longest
    uncovered gap. Then the point of largest optimistic value
    `U(y) = min(mu(x) + 2 |y - x|)` over the balls that hold `y`: the
    zooming index `mu + 2 r` of a ball's edge, carried inside the ball by
    the Lipschitz bound (Piyavskii-Shubert within the trusted balls).
    """
    x = np.asarray(self._positions, np.float64)
    if not x.size:
      self._activate(0.5)
      return 0
    r = self.radius(n_eff)
    # Gaps narrower than a pulled arm's ball do not count (an arm there
    # would be within r(1) / 2 of a ball's edge): no slivers at the ends.
    narrow = _gaps(x - r, x + r)
    gaps = [g for g in narrow if g[1] - g[0] > float(self.radius(1))]
    if gaps:
      length = np.array([b - a for a, b in gaps])
      top = np.flatnonzero(length >= length.max() - GAP_TOLERANCE)
      a, b = gaps[int(top[0] if top.size == 1 else self._rng.choice(top))]
      self._activate(0.5 * (a + b))
      return len(self._positions) - 1
    mu = self._means()
    eps = 1e-9
    cands = [x]
    for sign in (-1, 1):
      for shift in (0.0, eps):
        cands.append(x + sign * (r * (1 - 1e-12) + shift))
    order = np.argsort(x)
    i, j = (np.triu_indices(x.size, 1) if x.size <= 100
            else (order[:-1], order[1:]))
    meet = 0.5 * (x[i] + x[j]) + 0.25 * (mu[j] - mu[i]) * np.sign(x[j] - x[i])
    cands.append(meet)
    y = np.clip(np.concatenate(cands), 0.0, 1.0)
    for a, b in narrow:  # a point of a narrow gap stands for its midpoint
      y[(y > a) & (y < b)] = 0.5 * (a + b)
    u = self._optimistic(y, mu, x, r)
    top = np.flatnonzero(u >= u.max() - GAP_TOLERANCE)
    best = float(y[top[0] if top.size == 1 else self._rng.choice(top)])
    near = np.abs(x - best)
    if near.min() <= GAP_TOLERANCE:
      return int(near.argmin())  # A repeat: the best point is an arm.
    self._activate(best)
    return len(self._positions) - 1

  def _pulls_below(self, radius: float, n: int) -> int:
    """Hallucinated pulls that take an arm with `n` pulls below `radius`."""
    c2 = self._radius_scale**2 * 2 * self._log_t  # r(n)^2 = c2 / (n + 1)
    if radius <= 0:
      return _MAX_COUNT
    return int(min(max(math.floor(c2 / radius**2 - n - 1) + 1, 1), _MAX_COUNT))

  def _fresh_choice(self, fresh: np.ndarray, pulled: np.ndarray) -> int:
    """A never-pulled arm: classic, at random; spread, the farthest from the
    arms pulled or pending (ties at random), so any prefix is spread out."""
    if self._variant == "classic" or not (pulled > 0).any():
      return int(self._rng.choice(fresh))
    x = np.asarray(self._positions)
    distance = np.abs(x[fresh, None] - x[None, pulled > 0]).min(axis=1)
    top = fresh[distance >= distance.max() - GAP_TOLERANCE]
    return int(top[0] if top.size == 1 else self._rng.choice(top))

  def _select(self, virtual: list[int]) -> int:
    """Chooses one arm (activating as needed) and marks it pending.

    `virtual` holds the round's extra hallucinated pulls from splits, per arm.
    """
    if self._variant == "spread":
      choice = self._spread_next(self._effective_counts())
      self._add_pending(choice)
      return choice
    for _ in range(_MAX_SPLITS):
      pulled = self._effective_counts()
      virtual.extend([0] * (pulled.size - len(virtual)))
      n_eff = self._cover(pulled + np.asarray(virtual, np.int64))
      virtual.extend([0] * (n_eff.size - len(virtual)))
      pulled = np.append(pulled, np.zeros(n_eff.size - pulled.size, np.int64))
      fresh = np.flatnonzero(pulled == 0)
      if fresh.size:
        choice = self._fresh_choice(fresh, pulled)
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
    self._add_pending(choice)
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
    if self._variant == "spread" and not self._positions and k > 1:
      # A first round is the grid of its k cell midpoints.
      arms = list(range(int(k)))
      for i in arms:
        self._activate((i + 0.5) / k)
        self._add_pending(i)
    else:
      virtual: list[int] = []
      arms = [self._select(virtual) for _ in range(int(k))]
    if self._variant == "classic":
      # The last pull's ball shrank too: keep [0, 1] covered between rounds.
      self._cover(self._effective_counts())
    self._num_rounds += 1
    return self.learning_rate(np.asarray([self._positions[a] for a in arms]))

  def ask_pulls(self, k: int = 1) -> list[Pull]:
    """`ask`, returning the round's pulls with their ids.

    Tell the rewards by pull (`tell(pulls, rewards)`) or by id
    (`tell_ids(ids, rewards)`): unambiguous even when two pending pulls share
    a rate, and independent of how the rate was rounded on its way.

    Args:
      k: the number of pulls in the round, `k >= 1`.

    Returns:
      `k` `Pull`s, in the order of `ask`'s rates.

    Examples:
      >>> from optax_exptest import ZoomingSearch
      >>> search = ZoomingSearch(0.0, 1.0, horizon=8)
      >>> pulls = search.ask_pulls(2)
      >>> [p.id for p in pulls], [p.learning_rate for p in pulls]
      ([0, 1], [0.25, 0.75])
      >>> search.tell_ids([1, 0], [0.9, 0.1])
      >>> search.best
      (0.75, 0.9)
    """
    first = len(self._pending)
    rates = self.ask(k)
    return [Pull(int(self._pending[first + i][2]), float(lr), int(self._pending[first + i][1]))
            for i, lr in enumerate(rates)]

  def record(self, learning_rates: npt.ArrayLike,
             rewards: Optional[npt.ArrayLike] = None) -> list[Pull]:
    """Records pulls chosen elsewhere, e.g. rebuilt from a shared store.

    Each rate becomes a pull of the arm at its position (activated when
    new): told when `rewards` is given (NaN: still pending), pending
    otherwise. The integrations rebuild a search this way from the trials
    of an Optuna storage, which every worker process reads.

    Args:
      learning_rates: 1-D rates in `[low, high]`.
      rewards: optional, one per rate, as in `tell`; NaN marks a pending
        pull.

    Returns:
      The pulls, with their ids.

    Examples:
      >>> from optax_exptest import ZoomingSearch
      >>> search = ZoomingSearch(0.0, 1.0, horizon=8)
      >>> _ = search.record([0.5, 0.25], [0.9, float("nan")])
      >>> search.num_pulls, search.pending.tolist()
      (1, [0.25])
    """
    lrs = np.asarray(learning_rates, np.float64).reshape(-1)
    slack = RATE_TOLERANCE * abs(self._high)
    if not np.all((lrs >= self._low - slack) & (lrs <= self._high + slack)):
      raise ValueError(
          f"ZoomingSearch.record: learning_rates must lie in [{self._low},"
          f" {self._high}], got {lrs.tolist()}."
      )
    lrs = np.clip(lrs, self._low, self._high)
    if self._scale == "log":
      u = np.log(lrs / self._low) / math.log(self._high / self._low)
    else:
      u = (lrs - self._low) / (self._high - self._low)
    u = np.clip(u, 0.0, 1.0)
    pulls = []
    for x in u:
      near = [i for i, p in enumerate(self._positions) if abs(p - x) <= GAP_TOLERANCE]
      if near:
        arm = near[0]
      else:
        self._activate(float(x))
        arm = len(self._positions) - 1
      self._add_pending(arm)
      pulls.append(Pull(self._pending[-1][2], float(self.learning_rate(self._positions[arm])),
                        self._num_rounds))
    self._num_rounds += 1
    if rewards is not None:
      values = np.asarray(rewards, np.float64).reshape(-1)
      if values.shape != lrs.shape:
        raise ValueError(
            "ZoomingSearch.record: rewards must have one value per rate, got"
            f" {values.shape} for {lrs.shape}."
        )
      told = [i for i in range(len(pulls)) if not np.isnan(values[i])]
      self.tell_ids([pulls[i].id for i in told], values[told])
    if self._variant == "classic":
      self._cover(self._effective_counts())
    return pulls

  @property
  def pending_pulls(self) -> list[Pull]:
    """The pulls asked and not told yet, in the order asked."""
    return [Pull(int(i), float(self.learning_rate(self._positions[a])), int(r))
            for a, r, i in self._pending]

  def tell_ids(self, pull_ids: Sequence[int], rewards: npt.ArrayLike) -> None:
    """Records the rewards of pending pulls given by id (see `ask_pulls`).

    Args:
      pull_ids: ids of pending pulls (`Pull.id`), each at most once.
      rewards: one reward per id, as in `tell`.

    Raises:
      ValueError: on mismatched lengths, or an id not pending (never asked,
        or already told); nothing is recorded then.

    Examples:
      >>> from optax_exptest import ZoomingSearch
      >>> search = ZoomingSearch(0.0, 1.0, horizon=8)
      >>> ids = [p.id for p in search.ask_pulls(3)]
      >>> search.tell_ids(ids, [0.2, 0.5, 0.3])
      >>> search.num_pulls
      3
    """
    ids = [int(i) for i in np.asarray(pull_ids).reshape(-1)]
    values = np.asarray(rewards, dtype=np.float64)
    if values.shape != (len(ids),) or np.ndim(pull_ids) != 1:
      raise ValueError(
          "ZoomingSearch.tell_ids: pull_ids and rewards must be 1-D of the"
          f" same length, got {len(ids)} ids and rewards of shape"
          f" {values.shape}."
      )
    where = {pid: i for i, (_, _, pid) in enumerate(self._pending)}
    matched = []
    for pid in ids:
      if pid not in where or where[pid] in matched:
        raise ValueError(
            f"ZoomingSearch.tell_ids: pull id {pid} is not pending (never"
            " asked, already told, or given twice); pending ids are"
            f" {[p[2] for p in self._pending]}."
        )
      matched.append(where[pid])
    self._record(matched, values)

  def tell(self, learning_rates: npt.ArrayLike, rewards: npt.ArrayLike) -> None:
    """Records the rewards of pending pulls.

    Pulls may be told in any order and in several calls. Pass the `Pull`s of
    `ask_pulls` (matched by id), or, as a convenience, learning rates as
    returned by `ask`: each must be one asked and not yet told (matched
    within a relative `1e-5`, so float32 copies match; the first pending
    pull of a repeated rate). Nothing is recorded unless all are valid.

    Args:
      learning_rates: 1-D, the rates as returned by `ask`, or a sequence of
        `Pull`s.
      rewards: 1-D, same length, in `[0, 1]`, higher is better; finite values
        are clipped to `[0, 1]`, NaN or infinite ones count as 0 (a diverged
        run).

    Raises:
      ValueError: on mismatched lengths or a rate that is not pending.
    """
    if (isinstance(learning_rates, (list, tuple)) and learning_rates
        and all(isinstance(p, Pull) for p in learning_rates)):
      self.tell_ids([p.id for p in learning_rates], rewards)
      return
    lrs = np.asarray(learning_rates, dtype=np.float64)
    values = np.asarray(rewards, dtype=np.float64)
    if lrs.ndim != 1 or values.shape != lrs.shape:
      raise ValueError(
          "ZoomingSearch.tell: learning_rates and rewards must be 1-D of the"
          f" same length, got shapes {lrs.shape} and {values.shape}; pass one"
          " reward per learning rate returned by ask()."
      )
    open_pulls = list(range(len(self._pending)))
    open_rates = self.learning_rate(
        np.asarray([self._positions[a] for a, _, _ in self._pending])
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
    self._record(matched, values)

  def _record(self, matched: list[int], values: np.ndarray) -> None:
    """Tells `values` to the pending pulls at the indices `matched`."""
    finite = np.isfinite(values)
    values = np.where(finite, np.clip(values, 0.0, 1.0), 0.0)
    for p, reward, ok in zip(matched, values, finite):
      arm, round_, pull_id = self._pending[p]
      self._counts[arm] += 1
      self._sums[arm] += float(reward)
      self._history.append(dict(
          pull=pull_id, round=round_, arm=self._positions[arm],
          learning_rate=float(self.learning_rate(self._positions[arm])),
          reward=float(reward), finite=bool(ok),
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
        next_id=self._next_id,
        num_rounds=self._num_rounds,
        history=self.history,
        rng=self._rng.bit_generator.state,
    )

  def load_state_dict(self, state: dict[str, Any]) -> None:
    """Restores `state_dict()` in place; the configuration must match.

    Raises:
      ValueError: when the state comes from a search with other arguments.
    """
    if state.get("version") not in (1, _STATE_VERSION):
      raise ValueError(
          f"ZoomingSearch.load_state_dict: unknown state version"
          f" {state.get('version')!r}, expected {_STATE_VERSION}."
      )
    saved = _saved_config(state)
    diff = {k: (saved[k], v) for k, v in self.config.items() if saved.get(k) != v}
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
    self._pending = [
        (int(p[0]), int(p[1]), int(p[2]) if len(p) > 2 else i)
        for i, p in enumerate(state["pending"])
    ]
    self._next_id = int(state.get("next_id", len(self._history) + len(self._pending)))
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
    saved = _saved_config(state)
    search = cls(**{k: saved[k] for k in _CONFIG_KEYS})
    search.load_state_dict(state)
    return search

  def __repr__(self) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
    return (
        f"ZoomingSearch({args}; {len(self._positions)} arms,"
        f" {self.num_pulls} pulls, {len(self._pending)} pending)"
    )


def _saved_config(state: dict[str, Any]) -> dict[str, Any]:
  """The configuration of a saved state; version 1 was classic zooming."""
  config = dict(state["config"])
  if state.get("version") == 1:
    config.setdefault("variant", "classic")
  return config


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
