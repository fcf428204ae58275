r"""The two variants of zooming, as functions of the pull record.

Both variants give arm `x` with `n(x)` pulls (told and pending) the ball of
radius

.. math::
  r(x) = \mathrm{radius\_scale} \sqrt{2 \log T / (n(x) + 1)}

(`Radius`), and read the mean rewards `mu(x)` of a `PullRecord`. A variant
is a `Variant`: its default radius scale, `ask(record, k, radius)`, which
activates arms and adds the round's `k` pending pulls to the record and
returns their arms, and `cover(record, radius)`, run after pulls are added
from elsewhere (`ZoomingSearch.record`). The rules are given in the
docstring of `ZoomingSearch`; `VARIANTS` maps each name to its `Variant`.
"""

import math
from typing import Callable, NamedTuple

import numpy as np
import numpy.typing as npt

from optax_exptest._src.arm_geometry import GAP_TOLERANCE
from optax_exptest._src.arm_geometry import gaps
from optax_exptest._src.pull_record import PullRecord

# Bounds on a classic round's splits (see `classic_select`).
_MAX_SPLITS = 10_000
_MAX_COUNT = 2**52


class Radius(NamedTuple):
  """The confidence radius `scale * sqrt(2 log T / (n + 1))` of an arm.

  Attributes:
    scale: `radius_scale`.
    log_t: `log T`, `T` the horizon.

  Examples:
    >>> import math
    >>> from optax_exptest._src.zooming_variants import Radius
    >>> radius = Radius(0.1, math.log(8))
    >>> round(float(radius(0)), 4), radius.pulls_below(0.1, 0)
    (0.2039, 4)
  """

  scale: float
  log_t: float

  def __call__(self, pulls: npt.ArrayLike) -> np.ndarray:
    """The radius of arms with `pulls` pulls (any shape)."""
    n = np.asarray(pulls, dtype=np.float64)
    return self.scale * np.sqrt(2 * self.log_t / (n + 1))

  def pulls_below(self, radius: float, n: int) -> int:
    """Hallucinated pulls that take an arm with `n` pulls below `radius`."""
    c2 = self.scale**2 * 2 * self.log_t  # r(n)^2 = c2 / (n + 1)
    if radius <= 0:
      return _MAX_COUNT
    return int(min(max(math.floor(c2 / radius**2 - n - 1) + 1, 1), _MAX_COUNT))


def _argmax(values: np.ndarray, among: np.ndarray, rng: np.random.Generator) -> int:
  """The index in `among` of the largest value, ties at random."""
  top = among[values[among] >= values[among].max()]
  return int(top[0] if top.size == 1 else rng.choice(top))


# Spread.


def spread_radius_scale(horizon: int) -> float:
  """`1 / (T sqrt(log T))`: an arm pulled once has radius `1 / T`."""
  return 1.0 / (horizon * math.sqrt(math.log(horizon)))


def _optimistic(y: np.ndarray, mu: np.ndarray, x: np.ndarray,
                r: np.ndarray) -> np.ndarray:
  """`U(y)`: the least `mu(x) + 2 |y - x|` over the balls holding `y`."""
  dist = np.abs(y[:, None] - x[None, :])
  cone = mu[None, :] + 2 * dist
  inside = np.where(dist <= r[None, :], cone, np.inf).min(axis=1)
  # Points of gaps too narrow to count: the nearest cone.
  return np.where(np.isfinite(inside), inside, cone.min(axis=1))


def spread_next(record: PullRecord, radius: Radius) -> int:
  """Spread: the arm of the next pull (activated when new).

  Arms are only activated when pulled. While the balls of the pulled (and
  pending) arms leave `[0, 1]` uncovered, the midpoint of the longest
  uncovered gap. Then the point of largest optimistic value
  `U(y) = min(mu(x) + 2 |y - x|)` over the balls that hold `y`: the
  zooming index `mu + 2 r` of a ball's edge, carried inside the ball by
  the Lipschitz bound (Piyavskii-Shubert within the trusted balls).

  Args:
    record: the search's pulls; an arm may be activated in it.
    radius: the confidence radius.

  Returns:
    The index of the arm to pull (not marked pending).
  """
  x = np.asarray(record.positions, np.float64)
  if not x.size:
    return record.activate(0.5)
  r = radius(record.effective_counts())
  # Gaps narrower than a pulled arm's ball do not count (an arm there
  # would be within r(1) / 2 of a ball's edge): no slivers at the ends.
  narrow = gaps(x - r, x + r)
  wide = [g for g in narrow if g[1] - g[0] > float(radius(1))]
  if wide:
    length = np.array([b - a for a, b in wide])
    top = np.flatnonzero(length >= length.max() - GAP_TOLERANCE)
    a, b = wide[int(top[0] if top.size == 1 else record.rng.choice(top))]
    return record.activate(0.5 * (a + b))
  mu = record.means()
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
  u = _optimistic(y, mu, x, r)
  top = np.flatnonzero(u >= u.max() - GAP_TOLERANCE)
  best = float(y[top[0] if top.size == 1 else record.rng.choice(top)])
  near = np.abs(x - best)
  if near.min() <= GAP_TOLERANCE:
    return int(near.argmin())  # A repeat: the best point is an arm.
  return record.activate(best)


def spread_ask(record: PullRecord, k: int, radius: Radius) -> list[int]:
  """Spread: the arms of a round of `k` pulls, marked pending in `record`.

  A first round of `k > 1` pulls is the grid of its `k` cell midpoints;
  otherwise each pull is `spread_next`, with the round's earlier pulls
  pending.
  """
  if not record.positions and k > 1:
    arms = [record.activate((i + 0.5) / k) for i in range(k)]
    for arm in arms:
      record.add_pending(arm)
    return arms
  arms = []
  for _ in range(k):
    arms.append(spread_next(record, radius))
    record.add_pending(arms[-1])
  return arms


def spread_cover(record: PullRecord, radius: Radius) -> None:
  """Spread activates arms only when it pulls them: nothing to cover."""
  del record, radius


# Classic.


def classic_radius_scale(horizon: int) -> float:
  """`1`: the radius of Kleinberg, Slivkins & Upfal."""
  del horizon
  return 1.0


def _cover(record: PullRecord, radius: Radius, n_eff: np.ndarray) -> np.ndarray:
  """Activates arms until the balls cover [0, 1]; returns the new counts.

  The midpoint of the leftmost gap, one arm at a time; `n_eff` are the
  counts that set the radii (with a round's hallucinated pulls).
  """
  x = np.asarray(record.positions, dtype=np.float64)
  r = radius(n_eff)
  r0 = float(radius(0))
  while found := gaps(x - r, x + r):
    mid = 0.5 * (found[0][0] + found[0][1])
    record.activate(mid)
    x = np.append(x, mid)
    n_eff = np.append(n_eff, 0)
    r = np.append(r, r0)
  return n_eff


def classic_cover(record: PullRecord, radius: Radius) -> None:
  """Classic: activates arms until the balls of all pulls cover `[0, 1]`."""
  _cover(record, radius, record.effective_counts())


def _exclusive_reach(arm: int, x: np.ndarray, r: np.ndarray) -> float:
  """How far from `arm` the points only its ball covers reach (0: none)."""
  others = np.arange(x.size) != arm
  ends = [e for gap in gaps(x[others] - r[others], x[others] + r[others])
          for e in gap]
  if not ends:
    return 0.0
  return abs(float(max(ends, key=lambda e: abs(e - x[arm]))) - x[arm])


def classic_select(record: PullRecord, radius: Radius, virtual: list[int]) -> int:
  """Classic: chooses one arm (activating as needed) and marks it pending.

  Args:
    record: the search's pulls.
    radius: the confidence radius.
    virtual: the round's extra hallucinated pulls from splits, per arm
      (updated).

  Returns:
    The index of the arm chosen.
  """
  for _ in range(_MAX_SPLITS):
    pulled = record.effective_counts()
    virtual.extend([0] * (pulled.size - len(virtual)))
    n_eff = _cover(record, radius, pulled + np.asarray(virtual, np.int64))
    virtual.extend([0] * (n_eff.size - len(virtual)))
    pulled = np.append(pulled, np.zeros(n_eff.size - pulled.size, np.int64))
    fresh = np.flatnonzero(pulled == 0)
    if fresh.size:
      choice = int(record.rng.choice(fresh))
      break
    mu, x, r = record.means(), np.asarray(record.positions), radius(n_eff)
    index = mu + 2 * r
    pending = pulled > np.asarray(record.counts)
    free_level = index[~pending].max() if (~pending).any() else -math.inf
    if free_level >= index.max():
      choice = _argmax(index, np.flatnonzero(~pending), record.rng)
      break
    # Split: lower the level from the top; pending arms above it get
    # hallucinated pulls, until a non-pending arm's index or an uncovered
    # gap is reached.
    level, opener, reach = free_level, -1, 0.0
    for b in np.flatnonzero(pending & (index > free_level)):
      d = _exclusive_reach(b, x, r)
      if d > 0 and mu[b] + 2 * d > level:
        level, opener, reach = mu[b] + 2 * d, b, d
    above = pending & (index > level)
    if opener >= 0:
      above[opener] = True
    lowered = [b for b in np.flatnonzero(above) if b == opener or mu[b] < level]
    if not lowered:
      choice = _argmax(index, np.flatnonzero(above), record.rng)
      break  # nothing can be split: repeat the arm, with a fresh seed
    for b in lowered:
      target = reach if b == opener else (level - mu[b]) / 2
      virtual[b] = min(virtual[b] + radius.pulls_below(target, n_eff[b]), _MAX_COUNT)
  else:  # Not reached in practice: a bound on the loop, not a rule.
    index = record.means() + 2 * radius(n_eff)
    choice = _argmax(index, np.arange(n_eff.size), record.rng)
  record.add_pending(choice)
  return choice


def classic_ask(record: PullRecord, k: int, radius: Radius) -> list[int]:
  """Classic: the arms of a round of `k` pulls, marked pending in `record`.

  Each pull is `classic_select`, splitting balls rather than repeating
  arms; then the last pull's ball, which shrank too, is covered.
  """
  virtual: list[int] = []
  arms = [classic_select(record, radius, virtual) for _ in range(k)]
  classic_cover(record, radius)
  return arms


class Variant(NamedTuple):
  """The rules of a variant of zooming.

  Attributes:
    default_radius_scale: `horizon -> radius_scale` when none is given.
    ask: `(record, k, radius) -> arms`: a round of `k` pulls, activated and
      marked pending in the record.
    cover: `(record, radius) -> None`: run after pulls are recorded from
      elsewhere.
  """

  default_radius_scale: Callable[[int], float]
  ask: Callable[[PullRecord, int, Radius], list[int]]
  cover: Callable[[PullRecord, Radius], None]


VARIANTS = {
    "spread": Variant(spread_radius_scale, spread_ask, spread_cover),
    "classic": Variant(classic_radius_scale, classic_ask, classic_cover),
}


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
  if variant not in VARIANTS:
    raise ValueError(
        f"default_radius_scale: variant must be one of {tuple(VARIANTS)}, got"
        f" variant={variant!r}."
    )
  return VARIANTS[variant].default_radius_scale(horizon)
