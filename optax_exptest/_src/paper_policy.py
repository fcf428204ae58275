"""The paper's Algorithm 1 as a policy: ExpTest's default.

Windows of `N = max(4, round(c_w W))` losses, `W = round(2 sqrt(2) L0 / (e
rho eta))` (`window.window_size` at the effective rate) and `c_w` the
mini-batch correction measured over the first `W` steps after each rate
change. A complete window gets the exponential F-test while searching and
the slope's t-test once tuning (`stats`), and `algorithm1` turns the
p-value into the outcome, a pure function tested as a truth table
(`tests/test_decision.py`):

=========  ========  ===========  =========  =====================  =========
phase      complete  p < alpha    diverged   decision               cut
=========  ========  ===========  =========  =====================  =========
any        any       any          yes        DIVERGED               yes
searching  yes       yes          no         EXPONENTIAL (tuning)   no
searching  yes       no           no         RESTART                yes
tuning     yes       yes          no         DECREASING             no
tuning     yes       no           no         PLATEAU                yes
any        no        any          no         NONE                   no
=========  ========  ===========  =========  =====================  =========

A cut multiplies the rate by `beta` and starts a new window (and a new
correction) at the new rate; a passed test starts a window of the same
length. The parameters go back to the anchor on DIVERGED (whatever the
mode: a run must not go on from parameters that blew up) and, unless
`reset=False`, on RESTART (the paper's restart). The phase stays what it
was, except after a passed search test, and after a divergence with
`anchor="init"` (the anchor is then the initial parameters: the search
starts again).

A fault that a divergence has not confirmed (`exptest`'s
`divergence_patience`) never reaches the policy: the update records it as
SKIPPED, with no cut and a zero update.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from optax_exptest._src import inner_rules
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


class Outcome(NamedTuple):
  """Algorithm 1's outcome at one event (all scalars).

  Attributes:
    decision: the `Decision` (int32).
    phase: the new `Phase` (int32).
    cut: whether the rate is cut (and a new window and correction start).
    restore: whether the parameters go back to the anchor.
  """

  decision: jax.Array
  phase: jax.Array
  cut: jax.Array
  restore: jax.Array


def algorithm1(
    phase: jax.typing.ArrayLike,
    complete: jax.typing.ArrayLike,
    p_value: jax.typing.ArrayLike,
    alpha: jax.typing.ArrayLike,
    diverged: jax.typing.ArrayLike,
    mode: AnchorMode = AnchorMode.TUNING_WINDOWS,
) -> Outcome:
  """Algorithm 1's decision on one step (see the module's table).

  Args:
    phase: the current `Phase`.
    complete: whether the window holds its full length (a test ran).
    p_value: the p-value of that test (ignored when not `complete`).
    alpha: the significance level.
    diverged: whether a divergence is confirmed at this step.
    mode: where the parameters return (`policy.AnchorMode`): with
      `EVERY_WINDOW` (`reset=False`) a failed search test keeps them; with
      `INIT` a divergence searches again.

  Returns:
    An `Outcome`.

  Examples:
    >>> from optax_exptest._src.paper_policy import algorithm1
    >>> from optax_exptest import Decision, Phase
    >>> v = algorithm1(Phase.SEARCHING, True, 0.5, 0.05, False)
    >>> Decision(int(v.decision)).name, bool(v.cut), bool(v.restore)
    ('RESTART', True, True)
  """
  phase = jnp.asarray(phase, jnp.int32)
  diverged = jnp.asarray(diverged, bool)
  tested = jnp.asarray(complete, bool) & ~diverged
  passed = tested & (p_value < alpha)
  failed = tested & ~passed
  searching = phase == Phase.SEARCHING
  decision = jnp.where(
      diverged,
      Decision.DIVERGED,
      jnp.where(
          tested,
          jnp.where(
              searching,
              jnp.where(passed, Decision.EXPONENTIAL, Decision.RESTART),
              jnp.where(passed, Decision.DECREASING, Decision.PLATEAU),
          ),
          Decision.NONE,
      ),
  ).astype(jnp.int32)
  restart = mode.restarts & failed & searching
  search_again = mode is AnchorMode.INIT
  new_phase = jnp.where(
      passed & searching, Phase.TUNING,
      jnp.where(search_again & diverged, Phase.SEARCHING, phase),
  ).astype(jnp.int32)
  return Outcome(
      decision=decision,
      phase=new_phase,
      cut=diverged | failed,
      restore=diverged | restart,
  )


def p_value(window: window_lib.WindowState, phase: jax.Array) -> jax.Array:
  """The p-value of the test the phase calls for, on the window's losses:
  the exponential F-test while searching, the slope's t-test once tuning."""
  t, y, w = window_lib.points(window)
  p = lazy_cond(
      phase == Phase.SEARCHING,
      stats.weighted_exponential_test,
      stats.weighted_plateau_test,
      t, y, w,
  )
  return p.astype(window.losses.sums.dtype)


@dataclasses.dataclass(frozen=True)
class PaperPolicy(Policy):
  """The paper's Algorithm 1 (see the module's text).

  Attributes:
    sgd_correction: measure the mini-batch correction `c_w` over the first
      `W` steps of each window after a rate change (False: `c_w = 1`, for
      full-batch training).

  Examples:
    >>> import jax.numpy as jnp, optax_exptest
    >>> from optax_exptest.policies import PaperPolicy
    >>> tx = optax_exptest.exptest(0.1, policy=PaperPolicy(sgd_correction=False))
    >>> state = tx.init(jnp.zeros(2))
    >>> _, state = tx.update(jnp.ones(2), state, jnp.zeros(2), value=1.0)
    >>> int(state.window.length)  # W = 2 sqrt(2) / (0.1 e), rounded
    10
  """

  sgd_correction: bool = True

  @property
  def measures_correction(self) -> bool:
    return self.sgd_correction

  def first_window(self, window, scales, learning_rate, hp):
    del hp  # The window is the paper's W, whatever the horizon.
    w = window_lib.window_size(
        scales.loss, inner_rules.effective_rate(learning_rate, scales.rho)
    )
    return window_lib.with_lengths(window, w, window_lib.test_length(w))

  def decide(
      self, event: Event, state: tuple, hp: Hyperparameters, mode: AnchorMode
  ) -> tuple[Verdict, tuple]:
    p = lazy_cond(
        event.complete,
        lambda w, phase, last: p_value(w, phase),
        lambda w, phase, last: last,
        event.window, event.phase, event.p_value,
    )
    outcome = algorithm1(
        event.phase, event.complete, p, hp.alpha, event.diverged, mode
    )
    rate_factor = jnp.where(outcome.cut, hp.beta, jnp.ones_like(hp.beta))
    w = jnp.where(
        event.scales.loss > 0,
        window_lib.window_size(event.scales.loss, inner_rules.effective_rate(
            event.learning_rate * rate_factor, event.scales.rho)),
        window_lib.MAX_WINDOW,
    ).astype(jnp.int32)
    zero = jnp.zeros((), jnp.int32)
    verdict = Verdict(
        decision=outcome.decision,
        phase=outcome.phase,
        rate_factor=rate_factor,
        restore=outcome.restore,
        p_value=p.astype(event.p_value.dtype),
        # A cut: a window at the new rate, with a new correction; a test
        # passed: one of the same length; otherwise the window goes on.
        next_length=jnp.where(
            outcome.cut, window_lib.test_length(w),
            jnp.where(event.complete, event.window.length, zero),
        ),
        measure_steps=jnp.where(
            outcome.cut & self.sgd_correction, w, zero
        ),
    )
    return verdict, state
