"""Zooming search: learning rates as the arms of a Lipschitz bandit.

Priyanka, Kalyani & Chatterjee, "Learning Rate Optimization for Deep Neural
Networks Using Lipschitz Bandits", arXiv 2409.09783, after the zooming
algorithm of Kleinberg, Slivkins & Upfal, "Multi-armed bandits in metric
spaces" (STOC 2008).

The arm space is `[0, 1]`, mapped to learning rates linearly or
log-uniformly. The search keeps a set of active arms, each with a ball of
radius `r(x) = radius_scale * sqrt(2 log T / (n(x) + 1))` around it. Balls
shrink as arms are pulled; wherever they stop covering `[0, 1]` a new arm is
activated, so arms concentrate where the rewards are high.

This module is the search's interface (`ask`, `tell`, `record`, the
read-only views and `state_dict`). The rest lives by concept: the arm space
and its map to learning rates in `arm_geometry`, the record of pulls and its
versioned save and load in `pull_record`, and the two variants' rules, as
functions of the record, in `zooming_variants`.
"""

import math
from typing import Any, Literal, NamedTuple, Optional, Sequence

import numpy as np
import numpy.typing as npt

from optax_exptest._src import pull_record
from optax_exptest._src.arm_geometry import ArmGeometry
from optax_exptest._src.arm_geometry import GAP_TOLERANCE
from optax_exptest._src.zooming_variants import default_radius_scale
from optax_exptest._src.zooming_variants import Radius
from optax_exptest._src.zooming_variants import VARIANTS

# A told learning rate matches an asked one within this relative tolerance
# (a rate that went through float32 and back still matches).
RATE_TOLERANCE = 1e-5
# The initial covering needs about 1 / (2 r0) arms; refuse absurd ones.
MIN_INITIAL_RADIUS = 1e-5
_CONFIG_KEYS = ("low", "high", "scale", "horizon", "radius_scale", "variant", "seed")


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



def _check_arguments(
    low: float, high: float, scale: str, horizon: Any, variant: str, seed: Any
) -> None:
  """`ZoomingSearch`'s arguments other than `radius_scale`, with messages
  that say how to fix the call."""
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
  if isinstance(seed, bool) or int(seed) != seed or seed < 0:
    raise ValueError(
        f"ZoomingSearch: seed must be a non-negative integer, got seed={seed!r}."
    )


def _checked_radius_scale(
    radius_scale: Optional[float], horizon: int, variant: str
) -> float:
  """The radius scale to use: the variant's default when None; checked."""
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
  return radius_scale


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
    _check_arguments(low, high, scale, horizon, variant, seed)
    config_radius_scale = radius_scale
    radius_scale = _checked_radius_scale(radius_scale, horizon, variant)
    self._geometry = ArmGeometry(low, high, scale)
    self._horizon = int(horizon)
    self._radius = Radius(radius_scale, math.log(self._horizon))
    self._config_radius_scale = (
        None if config_radius_scale is None else radius_scale)
    self._variant = variant
    self._rules = VARIANTS[variant]
    self._seed = int(seed)
    self._pulls = pull_record.PullRecord(self._seed)

  # Configuration and read-only views.

  @property
  def config(self) -> dict[str, Any]:
    """The constructor's arguments, as a dict."""
    return dict(
        low=self._geometry.low, high=self._geometry.high,
        scale=self._geometry.scale, horizon=self._horizon, radius_scale=self._config_radius_scale,
        variant=self._variant, seed=self._seed,
    )

  @property
  def radius_scale(self) -> float:
    """The factor on the radius in use (`default_radius_scale` when unset)."""
    return self._radius.scale

  @property
  def variant(self) -> str:
    """`"spread"` (the default) or `"classic"` (Kleinberg et al.'s rules)."""
    return self._variant

  @property
  def num_rounds(self) -> int:
    """The number of `ask` calls so far (rounds), told or not."""
    return self._pulls.num_rounds

  @property
  def num_pulls(self) -> int:
    """The number of rewards told so far."""
    return len(self._pulls.history)

  @property
  def pending(self) -> np.ndarray:
    """Learning rates asked and not told yet, in the order asked."""
    positions = [self._pulls.positions[p.arm] for p in self._pulls.pending]
    return self.learning_rate(np.asarray(positions, dtype=np.float64))

  @property
  def history(self) -> list[dict[str, Any]]:
    """Every pull told, in order, as dicts (a copy).

    Keys: `round` (the `ask` call it came from, from 0), `arm` (position in
    `[0, 1]`), `learning_rate`, `reward` (as used: clipped to `[0, 1]`, non-finite
    -> 0) and `finite` (whether the reward told was finite).
    """
    return [dict(h) for h in self._pulls.history]

  @property
  def arms(self) -> list[Arm]:
    """The active arms, in the order they were activated."""
    n_eff = self._pulls.effective_counts()
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
        for i, (x, n, s) in enumerate(
            zip(self._pulls.positions, self._pulls.counts, self._pulls.sums))
    ]

  @property
  def best(self) -> tuple[float, float]:
    """`(learning_rate, mean_reward)` of the arm with the best mean reward.

    Among arms with at least one reward told; ties go to the arm with more
    pulls, then the one activated first.

    Raises:
      RuntimeError: before the first `tell`.
    """
    if not self._pulls.history:
      raise RuntimeError(
          "ZoomingSearch.best: no reward has been told yet; call ask() and"
          " tell() (or zoom()) first."
      )
    candidates = [
        (s / n, n, -i)
        for i, (n, s) in enumerate(zip(self._pulls.counts, self._pulls.sums)) if n
    ]
    mean, _, neg_i = max(candidates)
    return float(self.learning_rate(self._pulls.positions[-neg_i])), float(mean)

  def learning_rate(self, position: npt.ArrayLike) -> np.ndarray:
    """Maps arm positions in `[0, 1]` to learning rates."""
    return self._geometry.learning_rate(position)

  def radius(self, pulls: npt.ArrayLike) -> np.ndarray:
    """`radius_scale * sqrt(2 log T / (pulls + 1))`."""
    return self._radius(pulls)

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
    arms = self._rules.ask(self._pulls, int(k), self._radius)
    self._pulls.num_rounds += 1
    return self.learning_rate(np.asarray([self._pulls.positions[a] for a in arms]))

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
    first = len(self._pulls.pending)
    rates = self.ask(k)
    asked = self._pulls.pending[first:]
    return [Pull(int(p.id), float(lr), int(p.round)) for p, lr in zip(asked, rates)]

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
    low, high = self._geometry.low, self._geometry.high
    slack = RATE_TOLERANCE * abs(high)
    if not np.all((lrs >= low - slack) & (lrs <= high + slack)):
      raise ValueError(
          f"ZoomingSearch.record: learning_rates must lie in [{low},"
          f" {high}], got {lrs.tolist()}."
      )
    known = self._pulls
    pulls = []
    for x in self._geometry.position(lrs):
      near = [i for i, p in enumerate(known.positions) if abs(p - x) <= GAP_TOLERANCE]
      arm = near[0] if near else known.activate(float(x))
      pull_id = known.add_pending(arm)
      pulls.append(Pull(pull_id, float(self.learning_rate(known.positions[arm])),
                        known.num_rounds))
    known.num_rounds += 1
    if rewards is not None:
      values = np.asarray(rewards, np.float64).reshape(-1)
      if values.shape != lrs.shape:
        raise ValueError(
            "ZoomingSearch.record: rewards must have one value per rate, got"
            f" {values.shape} for {lrs.shape}."
        )
      told = [i for i in range(len(pulls)) if not np.isnan(values[i])]
      self.tell_ids([pulls[i].id for i in told], values[told])
    self._rules.cover(known, self._radius)
    return pulls

  @property
  def pending_pulls(self) -> list[Pull]:
    """The pulls asked and not told yet, in the order asked."""
    return [Pull(int(p.id), float(self.learning_rate(self._pulls.positions[p.arm])),
                 int(p.round))
            for p in self._pulls.pending]

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
    where = {p.id: i for i, p in enumerate(self._pulls.pending)}
    matched = []
    for pid in ids:
      if pid not in where or where[pid] in matched:
        raise ValueError(
            f"ZoomingSearch.tell_ids: pull id {pid} is not pending (never"
            " asked, already told, or given twice); pending ids are"
            f" {[p.id for p in self._pulls.pending]}."
        )
      matched.append(where[pid])
    self._tell_pending(matched, values)

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
    open_pulls = list(range(len(self._pulls.pending)))
    open_rates = self.pending
    matched = []
    for lr in lrs:
      if open_pulls:
        rates = open_rates[open_pulls]
        j = int(np.argmin(np.abs(rates - lr)))
        if abs(rates[j] - lr) <= RATE_TOLERANCE * abs(rates[j]) + GAP_TOLERANCE * (
            self._geometry.high - self._geometry.low
        ):
          matched.append(open_pulls.pop(j))
          continue
      raise ValueError(
          f"ZoomingSearch.tell: learning rate {lr!r} was not asked, or was"
          f" already told; pending rates are {self.pending.tolist()}. Tell"
          " the rates returned by ask()."
      )
    self._tell_pending(matched, values)

  def _tell_pending(self, matched: list[int], values: np.ndarray) -> None:
    """Tells `values` to the pending pulls at the indices `matched`."""
    known = self._pulls
    rates = [self.learning_rate(known.positions[known.pending[p].arm]) for p in matched]
    known.tell_pending(matched, values, rates)

  # Checkpoints.

  def state_dict(self) -> dict[str, Any]:
    """The whole search as JSON-serialisable Python values.

    `ZoomingSearch.from_state_dict(json.loads(json.dumps(d)))` asks exactly
    what this search would: the random generator's state is included, and so
    are pending pulls. The format is versioned (`pull_record`); states of
    earlier versions still load.
    """
    return self._pulls.state_dict(self.config)

  def load_state_dict(self, state: dict[str, Any]) -> None:
    """Restores `state_dict()` in place; the configuration must match.

    Raises:
      ValueError: when the state comes from a search with other arguments.
    """
    pull_record.check_version(state)
    saved = pull_record.saved_config(state)
    diff = {k: (saved[k], v) for k, v in self.config.items() if saved.get(k) != v}
    if diff:
      raise ValueError(
          "ZoomingSearch.load_state_dict: the state was saved by a search"
          " with other arguments (saved, this one): "
          + ", ".join(f"{k}={a!r} vs {b!r}" for k, (a, b) in diff.items())
          + ". Use ZoomingSearch.from_state_dict, or a fresh checkpoint."
      )
    self._pulls = pull_record.PullRecord.from_state_dict(state)

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
    saved = pull_record.saved_config(state)
    search = cls(**{k: saved[k] for k in _CONFIG_KEYS})
    search.load_state_dict(state)
    return search

  def __repr__(self) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
    return (
        f"ZoomingSearch({args}; {len(self._pulls.positions)} arms,"
        f" {self.num_pulls} pulls, {len(self._pulls.pending)} pending)"
    )
