"""Probe the rate both ways from the anchor, then tune on windows that double.

A policy (`policy.py`) for networks whose best rate lies far from the
bound, above it (deep networks' large-rate phase) or below it, and whose
mini-batch loss is too noisy for the paper's short tuning windows
(`docs/design.md`, section 3.7).

Searching (`Phase.SEARCHING`), by probes. A probe trains `probe_steps`
updates from the anchor (the initial parameters, `inner`'s state fresh: the
paper's restart) at one rate and scores the mean loss of its second half.
The first probe runs at the start rate; while a probe scores better than
every probe before it, its parameters are saved and the next probe runs at
the rate times `1 / beta`. The first probe that scores worse (or diverges)
ends the search: the parameters return to the saved best probe's, whose
steps are kept, at its rate. If the very first step up is worse, the search
turns down (rates times `beta` from the start) and stops the same way; if
the first probe diverges, it goes down from there.

Tuning (`Phase.TUNING`), by tests at steps `T = first_test * 2^j` of the
run. The test at `T` reads the losses at the current rate since the last
test, or, after a rate change at step `c`, those after `(c + T) / 2` (the
fall to the new rate's level is left out); a rate change after `T / 2`
moves the test to `2 T`. It compares the mean loss (above `loss_floor`) of
the read part's second half with its first half's: the rate is kept if a
one-sided Welch test on batch means shows the second below `1 - delta`
times the first (a doubling of the time at this rate must still buy
`delta`), and cut by `beta` otherwise. Batch means (`batches` per half)
make the test valid for the correlated losses of a training run, as in
SASA (Lang, Zhang & Xiao, 2019).

With `exptest(..., horizon=)` the rate also decays to 0 over the run's last
`exptest.COOLDOWN` share; no test is due then.

Faults and divergences are the state machine's: a probe that diverges
scores worst, and a divergence while tuning returns to the last tested
window's parameters and cuts the rate.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from optax_exptest._src import stats
from optax_exptest._src import window as window_lib
from optax_exptest._src.decision import Decision
from optax_exptest._src.decision import Phase
from optax_exptest._src.decision import Verdict
from optax_exptest._src.lazy_cond import lazy_cond
from optax_exptest._src.policy import AnchorMode
from optax_exptest._src.policy import Event
from optax_exptest._src.policy import Hyperparameters
from optax_exptest._src.policy import Policy

# The share of a given horizon over which the rate decays (`exptest`).
_COOLDOWN = 0.2


class ProbeScore(NamedTuple):
  """A probe's score: the mean loss of its window's second half, from
  `batches` batch means, with the variance of that mean and the number of
  batch means behind it."""

  mean: jax.Array
  variance: jax.Array
  batches: jax.Array


class ProbingState(NamedTuple):
  """The probing policy's memory (scalars; times in updates of the run).

  Attributes:
    probes: the probes scored so far (int32).
    direction: +1 while probing up, -1 down (int32).
    best_score: the best probe's score (a `ProbeScore`; an infinite mean
      before the first).
    best_rate: the best probe's rate.
    next_test: the update at which the next tuning test is due (int32).
    skip_half: whether the tuning test reads only the second half of the
      window (a rate change started it).
  """

  probes: jax.Array
  direction: jax.Array
  best_score: ProbeScore
  best_rate: jax.Array
  next_test: jax.Array
  skip_half: jax.Array


def batch_means(
    window: window_lib.WindowState, start: jax.Array, stop: jax.Array,
    batches: int,
) -> tuple[jax.Array, jax.Array]:
  """The means of `batches` equal batches of the window's losses in
  `[start, stop)` (counted from the window's start), and their counts."""
  t, y, w = window_lib.points(window)
  start = start.astype(t.dtype)
  width = jnp.maximum(stop.astype(t.dtype) - start, 1) / batches
  index = jnp.floor((t - start) / width).astype(jnp.int32)
  inside = (w > 0) & (index >= 0) & (index < batches)
  index = jnp.where(inside, index, batches)  # a dropped segment
  sums = jax.ops.segment_sum(jnp.where(inside, y * w, 0), index, batches + 1)
  counts = jax.ops.segment_sum(jnp.where(inside, w, 0), index, batches + 1)
  return sums[:batches] / jnp.maximum(counts[:batches], 1), counts[:batches]


def _mean_and_variance(means: jax.Array, counts: jax.Array):
  """The mean of the batch means with data, and its variance estimate."""
  used = counts > 0
  n = jnp.maximum(jnp.sum(used), 1)
  mean = jnp.sum(jnp.where(used, means, 0)) / n
  var = jnp.sum(jnp.where(used, (means - mean) ** 2, 0)) / jnp.maximum(n - 1, 1)
  return mean, var / n, n


def decrease_test(
    window: window_lib.WindowState, start: jax.Array, delta: float,
    loss_floor: jax.Array, batches: int,
) -> jax.Array:
  """The p-value of "the second half's mean loss is not below `1 - delta`
  times the first half's" on the window's losses from `start` (above
  `loss_floor`; a one-sided Welch test on `batches` batch means a half).

  A small p-value means the loss still falls by more than `delta` per
  halving of the read part; 1 when the part cannot be judged.
  """
  stop = window.losses.count
  middle = (start + stop) // 2
  mean_a, var_a, n_a = _mean_and_variance(
      *batch_means(window, start, middle, batches))
  mean_b, var_b, n_b = _mean_and_variance(
      *batch_means(window, middle, stop, batches))
  keep = 1.0 - delta
  gap = keep * jnp.maximum(mean_a - loss_floor, 0) - (mean_b - loss_floor)
  var = keep**2 * var_a + var_b
  df = var**2 / (
      (keep**2 * var_a) ** 2 / jnp.maximum(n_a - 1, 1)
      + var_b**2 / jnp.maximum(n_b - 1, 1)
  )
  t = gap / jnp.sqrt(var)
  p = 1.0 - stats.t_cdf(t, jnp.maximum(df, 1.0))
  judged = (n_a >= 2) & (n_b >= 2) & (var > 0) & jnp.isfinite(t)
  return jnp.where(judged, p, 1.0).astype(window.losses.sums.dtype)


def probe_score(window: window_lib.WindowState, batches: int) -> ProbeScore:
  """The `ProbeScore` of the window's second half."""
  n = window.losses.count
  return ProbeScore(*_mean_and_variance(*batch_means(window, n // 2, n, batches)))


def lower_p_value(new: ProbeScore, old: ProbeScore) -> jax.Array:
  """The p-value of "`new`'s mean is not below `old`'s" (a one-sided Welch
  test on the batch means): 0 against an `old` of infinite mean (no probe
  scored yet) when `new` is finite; without variance, 0 or 1 by the means."""
  var = new.variance + old.variance
  df = var**2 / (new.variance**2 / jnp.maximum(new.batches - 1, 1)
                 + old.variance**2 / jnp.maximum(old.batches - 1, 1))
  t = (old.mean - new.mean) / jnp.sqrt(var)
  p = 1.0 - stats.t_cdf(t, jnp.maximum(df, 1.0))
  ordered = jnp.where(new.mean < old.mean, 0.0, 1.0)
  p = jnp.where(var > 0, p, ordered)
  return jnp.where(jnp.isfinite(old.mean), p,
                   jnp.where(jnp.isfinite(new.mean), 0.0, 1.0))


@dataclasses.dataclass(frozen=True)
class ProbingPolicy(Policy):
  """Probe the rate both ways from the start, then tune on doubling windows.

  Searching: probes of `probe_length` updates from the anchor at the start
  rate, then times `1 / beta` while a probe scores significantly lower than
  the best so far (or times `beta` if the first step up does not); the first
  probe that does not ends the search at the best probe's rate and
  parameters. Tuning: at steps `first_test * 2^j`, the rate is cut by `beta`
  unless the window's losses still fall by `delta` per halving. The module's
  text and `docs/design.md` (section 3a) give the rules and their reasons;
  `exptest(..., policy="probing")` is this policy with its defaults.

  Attributes:
    probe_steps: the updates of each probe (without a horizon).
    probe_share: with a horizon, the share of it a probe takes at most.
    max_probes: the most probes of a search.
    first_test: the step of the first tuning test; later ones double.
    delta: the share of the loss a doubling of the time at a rate must
      still remove for the rate to be kept.
    batches: the batch means per half of a window (a probe's score uses
      its second half).
    probe_alpha: the level at which a probe must score lower than the best
      to replace it (0: any lower score).

  Examples:
    >>> import jax.numpy as jnp, optax_exptest
    >>> from optax_exptest.policies import ProbingPolicy
    >>> tx = optax_exptest.exptest(0.1, policy=ProbingPolicy(probe_steps=100),
    ...                            horizon=5000)
    >>> state = tx.init(jnp.zeros(3))
    >>> optax_exptest.exptest_summary(state)["phase_name"]
    'searching'

  References:
    Lang, Zhang & Xiao, Using Statistics to Automate Stochastic
    Optimization, NeurIPS 2019, https://arxiv.org/abs/1909.09785 (batch
    means for a test on the correlated losses of a run).
    Chaudhry & Mizuno, ExpTest, 2024, https://arxiv.org/abs/2411.16975.
  """

  probe_steps: int = 200
  probe_share: float = 1 / 16
  max_probes: int = 8
  first_test: int = 100
  delta: float = 0.1
  batches: int = 8
  probe_alpha: float = 0.05
  saves_parameters = True

  def init_state(self, dtype):
    return ProbingState(
        probes=jnp.zeros((), jnp.int32),
        direction=jnp.ones((), jnp.int32),
        best_score=ProbeScore(
            jnp.full((), jnp.inf, dtype), jnp.zeros((), dtype),
            jnp.zeros((), jnp.int32)),
        best_rate=jnp.zeros((), dtype),
        next_test=jnp.zeros((), jnp.int32),
        skip_half=jnp.zeros((), bool),
    )

  def first_window(self, window, scales, learning_rate, hp):
    del scales, learning_rate
    n = self.probe_length(hp)
    return window_lib.with_lengths(window, n * 0, n)

  def probe_length(self, hp: Hyperparameters) -> jax.Array:
    """`probe_steps`, or with a horizon `probe_share` of it if that is
    shorter (at least 4 losses a batch mean of the score)."""
    share = jnp.floor(hp.horizon * self.probe_share)
    return jnp.clip(share, 4 * self.batches, self.probe_steps).astype(jnp.int32)

  def decide(
      self, event: Event, state: ProbingState, hp: Hyperparameters,
      mode: AnchorMode,
  ) -> tuple[Verdict, ProbingState]:
    del mode  # Every probe restarts from the anchor, whatever the mode.
    searching = event.phase == Phase.SEARCHING
    search, search_state = self._search(event, state, hp)
    tune, tune_state = self._tune(event, state, hp)
    pick = lambda a, b: jax.tree.map(
        lambda x, y: jnp.where(searching, x, y), a, b)
    return pick(search, tune), pick(search_state, tune_state)

  def _test_at_least(self, step: jax.Array) -> jax.Array:
    """The first test step `first_test * 2^j` (j >= 0) at least `step`."""
    ratio = jnp.maximum(step / self.first_test, 1.0)
    t = self.first_test * 2 ** jnp.ceil(jnp.log2(ratio)).astype(jnp.int32)
    # Guard the float log2 against rounding just below a power of two.
    return jnp.where(t < step, 2 * t, t).astype(jnp.int32)

  def _search(self, event, state, hp):
    """A probe's end (or divergence): the next probe, or the best one."""
    score = probe_score(event.window, self.batches)
    dtype = state.best_score.mean.dtype
    score = ProbeScore(
        jnp.where(event.complete, score.mean, jnp.inf).astype(dtype),
        score.variance.astype(dtype), score.batches.astype(jnp.int32))
    ended = event.complete | event.diverged
    # A probe replaces the best only if it scores significantly lower: a
    # difference within the mini-batch noise keeps the incumbent.
    p = lower_p_value(score, state.best_score)
    if self.probe_alpha > 0:
      lower = p < self.probe_alpha
    else:
      lower = (score.mean < state.best_score.mean) | (
          ~jnp.isfinite(state.best_score.mean) & jnp.isfinite(score.mean))
    better = ended & lower
    probes = state.probes + ended.astype(jnp.int32)
    up = state.direction > 0
    has_best = jnp.isfinite(state.best_score.mean)
    # The first step up scored worse: turn down, from the start rate.
    turn = ended & ~better & up & has_best & (state.probes == 1)
    # Probes that diverge before any scored: go down from them.
    down = ended & ~better & ~has_best
    direction = jnp.where(turn | down, -1, state.direction)
    go_on = (better & (probes < self.max_probes)) | turn | down
    stop = ended & ~go_on
    step_factor = jnp.where(direction > 0, 1 / hp.beta, hp.beta)
    rate_factor = jnp.where(
        go_on, jnp.where(turn, hp.beta**2, step_factor),
        jnp.where(stop & ~better, state.best_rate / event.learning_rate, 1.0),
    ).astype(hp.beta.dtype)
    # Back to the best probe, unless this last probe is the best.
    recall = stop & ~better
    now = event.step + 1  # Updates including this one.
    # The best probe's parameters trained at its rate: there is no fall to
    # a new level to leave out. The first test at `T` reads `[T / 2, T]`,
    # as every later one, all of it after the search.
    next_test = self._test_at_least(2 * now)
    verdict = Verdict(
        decision=jnp.where(
            ~ended, Decision.NONE,
            jnp.where(go_on, jnp.where(event.diverged, Decision.DIVERGED,
                                       Decision.PROBE),
                      Decision.BEST_PROBE)).astype(jnp.int32),
        phase=jnp.where(stop, Phase.TUNING, Phase.SEARCHING).astype(jnp.int32),
        rate_factor=rate_factor,
        restore=go_on | recall,
        p_value=jnp.where(ended, p, event.p_value).astype(event.p_value.dtype),
        next_length=jnp.where(
            go_on, self.probe_length(hp),
            jnp.where(stop, next_test - now, 0)).astype(jnp.int32),
        save=better,
        recall=recall,
        score=jnp.where(ended, score.mean, jnp.nan).astype(dtype),
    )
    new = state._replace(
        probes=probes,
        direction=direction,
        best_score=jax.tree.map(
            lambda a, b: jnp.where(better, a, b), score, state.best_score),
        best_rate=jnp.where(better, event.learning_rate, state.best_rate),
        next_test=jnp.where(stop, next_test, state.next_test),
        skip_half=jnp.where(stop, False, state.skip_half),
    )
    return verdict, new

  def _tune(self, event, state, hp):
    """A tuning test, or a divergence (a cut and a return to the anchor)."""
    now = event.step + 1
    in_cooldown = state.next_test > (1 - _COOLDOWN) * hp.horizon
    due = event.complete & ~in_cooldown & (event.phase == Phase.TUNING)
    length = event.window.losses.count
    start = jnp.where(state.skip_half, length // 2, 0)
    # Every value the branches read is an operand: under `vmap` a branch
    # must not close over a batched one.
    p = lazy_cond(
        due,
        lambda w, s, floor, p: decrease_test(w, s, self.delta, floor, self.batches),
        lambda w, s, floor, p: p,
        event.window, start, hp.loss_floor, event.p_value,
    )
    cut = (due & (p >= hp.alpha)) | event.diverged
    # After a cut, the first test whose window's second half, after the
    # change, holds a quarter of the run.
    next_test = jnp.where(cut, self._test_at_least(2 * now), 2 * state.next_test)
    ended = event.complete | event.diverged
    verdict = Verdict(
        decision=jnp.where(
            event.diverged, Decision.DIVERGED,
            jnp.where(due, jnp.where(cut, Decision.PLATEAU, Decision.DECREASING),
                      Decision.NONE)).astype(jnp.int32),
        phase=jnp.asarray(Phase.TUNING, jnp.int32),
        rate_factor=jnp.where(cut, hp.beta, 1.0).astype(hp.beta.dtype),
        restore=event.diverged,
        p_value=p.astype(event.p_value.dtype),
        next_length=jnp.where(
            ended,
            jnp.where(in_cooldown & ~event.diverged, window_lib.MAX_WINDOW,
                      next_test - now),
            0).astype(jnp.int32),
    )
    new = state._replace(
        next_test=jnp.where(ended, next_test, state.next_test),
        skip_half=jnp.where(ended, cut, state.skip_half),
    )
    return verdict, new
