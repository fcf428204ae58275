"""ExpTest: learning-rate search and tuning by hypothesis tests on the loss.

Chaudhry & Mizuno, "ExpTest: Automating Learning Rate Searching and
Tuning with Insights from Linearized Neural Networks", arXiv 2411.16975.

This module is the state machine; what the losses mean is a policy's
(`policy.py`; the paper's Algorithm 1 is `paper_policy.py`). One loss
travels one way (`docs/design.md`, section 2): `update(value=loss)` checks
the step for a fault, records the loss in the window (`window.py`); while
the mini-batch correction is measured the gradient goes into its sums
(`correction.py`); at the window's events (its end, a full buffer) or a
confirmed divergence the decision branch fixes the run's scales at the
first finite loss (`scales.py`), checks for a collapse (`collapse.py`) and
asks the policy for its `Verdict`, which sets the rate, the phase and the
next window, and moves the anchor; the update then applies the verdict:
`-eta * u`, a return to the anchor, or nothing for a skipped fault.

Only the fault check, the loss's push into the window and the scaling of
the updates run on every step. The rest runs in rare branches that update
the state in place and stay branches under `jax.vmap`
(`lazy_cond.lazy_update`).
"""

import functools
import math
from typing import Any, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

from optax_exptest._src import arguments
from optax_exptest._src import collapse
from optax_exptest._src import correction as correction_lib
from optax_exptest._src import finite
from optax_exptest._src import history as history_lib
from optax_exptest._src import inner_rules
from optax_exptest._src import scales as scales_lib
from optax_exptest._src import usage
from optax_exptest._src import window as window_lib
from optax_exptest._src.decision import Decision
from optax_exptest._src.decision import Phase
from optax_exptest._src.decision import Verdict
from optax_exptest._src.lazy_cond import lazy_cond
from optax_exptest._src.lazy_cond import lazy_update
from optax_exptest._src.policy import AnchorMode
from optax_exptest._src.policy import Event
from optax_exptest._src.policy import Hyperparameters
from optax_exptest._src.policy import Policy

__all__ = ["Decision", "ExpTestState", "Phase", "exptest"]

# The share of a given horizon over which the rate decays to 0.
COOLDOWN = 0.2


class ExpTestState(NamedTuple):
  """State of `exptest`: arrays only, so it jits, vmaps and checkpoints.

  The first eight fields are what a user logs (`exptest_summary` gives them
  as plain numbers); the rest is ExpTest's memory.

  Attributes:
    learning_rate: the current rate (float scalar).
    phase: `Phase` (int32): 0 searching, 1 tuning.
    num_cuts: number of rate cuts so far (int32).
    num_resets: number of returns of the parameters to the anchor (int32).
    num_skipped: number of steps skipped as transient faults (int32): a
      non-finite loss, gradient or update, or a loss far above `L0`, that
      did not persist (`divergence_patience`).
    p_value: p-value of the last test (1.0 before the first).
    decision: `Decision` taken by the last update (int32).
    step: number of updates so far (int32).
    faults_in_a_row: the faulty steps just before this one (int32); a
      divergence is confirmed when it reaches `divergence_patience`.
    window: the window under test (`window.WindowState`: the losses, its
      length, whether `c_w` is being measured).
    scales: the run's scales, fixed at the first finite loss
      (`scales.Scales`: `L0`, `||g_0||^2`, the live gradient entries, `rho`).
    collapse_seen: whether the last completed window ended on a model that
      looked collapsed (a collapse is confirmed at the next one).
    policy_state: the policy's own memory (`Policy.init_state`; `()` for
      the paper's).
    history: the run's last changes (`history.History`: each cut, return
      to the anchor or change of phase, with its step, rate and p-value),
      written only when one happens; `exptest_summary` lists them.
    correction: the sums behind the mini-batch correction `c_w`
      (`correction.CorrectionState`; its `displacement` is `()` when the
      policy measures no correction).
    anchor_params: where the parameters return on a reset or a divergence:
      while searching with `reset=True`, the parameters given to `init`;
      otherwise (tuning, or `reset=False`) the parameters at the end of the
      last completed window (with `anchor="init"`, always those of `init`).
    saved_params: a second copy of the parameters for a policy that keeps
      one (`Policy.saves_parameters`: the best probe's), `()` otherwise.
    inner_state: the state of the `inner` transformation.

  Examples:
    >>> import jax.numpy as jnp, optax_exptest
    >>> state = optax_exptest.exptest(0.1).init(jnp.zeros(3))
    >>> float(state.learning_rate), int(state.num_cuts), int(state.step)
    (0.1..., 0, 0)
  """

  learning_rate: jax.Array
  phase: jax.Array
  num_cuts: jax.Array
  num_resets: jax.Array
  num_skipped: jax.Array
  p_value: jax.Array
  decision: jax.Array
  step: jax.Array
  faults_in_a_row: jax.Array
  window: window_lib.WindowState
  scales: scales_lib.Scales
  collapse_seen: jax.Array
  policy_state: Any
  history: history_lib.History
  correction: correction_lib.CorrectionState
  anchor_params: optax.Params
  saved_params: optax.Params
  inner_state: optax.OptState


class _Slots(NamedTuple):
  """The parameter copies the decision branch may move: the anchor (`()`
  when it never moves) and the saved point (`()` for a policy without one)."""

  anchor: optax.Params
  saved: optax.Params


class _Controls(NamedTuple):
  """What the decision branch reads and writes: scalars and the window.

  `restore` is this step's (the parameters return to the anchor); the rest
  are the state's fields of the same names.
  """

  learning_rate: jax.Array
  phase: jax.Array
  num_cuts: jax.Array
  num_resets: jax.Array
  p_value: jax.Array
  decision: jax.Array
  window: window_lib.WindowState
  scales: scales_lib.Scales
  collapse_seen: jax.Array
  policy_state: Any
  history: history_lib.History
  restore: jax.Array


class _Static(NamedTuple):
  """What shapes the compiled update (hashable: jit's static argument)."""

  policy: Policy
  mode: AnchorMode
  inner: Optional[optax.GradientTransformationExtraArgs]
  # Whether `rho` is measured at the first finite loss (`inner_rules`).
  measures_rho: bool
  # Whether the rate follows the horizon's cooldown (`horizon` given).
  cools_down: bool


class _Faults(NamedTuple):
  """This step's fault, and what it means (all scalars).

  A fault is skipped (a zero update that leaves the window, the correction,
  the rate and `inner`'s state as they were) until `patience` faults in a
  row confirm a divergence. A skipped step leaves the parameters where they
  were, so the faults in a row are the same parameters failing on other
  batches: a rate too high fails again at once, a bad batch does not.
  """

  fault: jax.Array
  in_a_row: jax.Array
  confirmed: jax.Array
  skipped: jax.Array


class _Gradient(NamedTuple):
  """What the decision branch reads of this step's gradient (scalars)."""

  live: jax.Array  # Live entries (`collapse.live_entries`) at an event.
  norm_sq: jax.Array  # `||g||^2`.
  # `<g, u> / <g, g>` for a normalizing inner until the scales are fixed,
  # 1 otherwise (`inner_rules.measured_rho`).
  rho: jax.Array


def _float_dtype(params: Any) -> jnp.dtype:
  """The state's float dtype: the widest parameter float, at least float32."""
  dtypes = [
      x.dtype for x in jax.tree.leaves(params)
      if jnp.issubdtype(x.dtype, jnp.floating)
  ]
  return jnp.result_type(jnp.float32, *dtypes)


# ----------------------------------------------------------------------------
# Faults: the per-step checks.


def _is_fault(
    scales: scales_lib.Scales,
    value: jax.Array,
    flag: jax.Array,
    grad_squares: jax.Array,
    hp: Hyperparameters,
    learning_rate: jax.Array,
) -> jax.Array:
  """A step that must not move the parameters: a non-finite loss, gradient
  or inner update, or, once the scales are known, a loss with `value -
  loss_floor > divergence_factor * L0` or a gradient norm above
  `divergence_factor * ||g_0||`; and every step while the rate is not a
  positive finite number.

  The gradient's rule catches a batch whose loss stays moderate but whose
  step would not: inputs scaled by 1e4 give a model that classifies them
  right a small loss and, on the few it gets wrong, a gradient 1e4 times
  the usual one. The rate's rule catches a rate that `exptest` could not
  check, a traced one (one per vmapped arm): a negative rate would climb
  the loss, a NaN one fill the parameters with NaN. Its steps are faults,
  so the run confirms a divergence every `divergence_patience` steps and
  returns to the anchor: it stays where it started, and says why
  (`Decision.DIVERGED`, the rate in `exptest_summary`).
  """
  loss_far_above = (scales.loss > 0) & (
      value - hp.loss_floor > hp.divergence_factor * scales.loss
  )
  grad_far_above = (scales.grad_norm_sq > 0) & (
      grad_squares > jnp.square(hp.divergence_factor) * scales.grad_norm_sq
  )
  bad_rate = ~((learning_rate > 0) & (learning_rate < jnp.inf))
  return (flag != 0) | loss_far_above | grad_far_above | bad_rate


def _count_faults(
    fault: jax.Array, in_a_row: jax.Array, patience: jax.Array
) -> _Faults:
  in_a_row = jnp.where(fault, optax.safe_increment(in_a_row), 0)
  confirmed = in_a_row >= patience
  return _Faults(
      fault=fault,
      in_a_row=jnp.where(confirmed, 0, in_a_row).astype(jnp.int32),
      confirmed=confirmed,
      skipped=fault & ~confirmed,
  )


# ----------------------------------------------------------------------------
# The decision branch.


def _fix_scales(
    controls: _Controls,
    value: jax.Array,
    hp: Hyperparameters,
    gradient: _Gradient,
    policy: Policy,
) -> _Controls:
  """At the first finite loss: the run's scales, the start rate with a
  measured `rho`, and the policy's first window."""
  new = jnp.isfinite(value) & ~scales_lib.known(controls.scales)
  measured = jnp.where(new, gradient.rho, 1).astype(hp.alpha.dtype)
  learning_rate = policy.start_rate(controls.learning_rate, measured)
  rho = controls.scales.rho * measured
  scales = scales_lib.fix(
      controls.scales, value, hp.loss_floor,
      inner_rules.effective_rate(learning_rate, rho),
      gradient.norm_sq, gradient.live, rho,
  )
  first = policy.first_window(controls.window, scales, learning_rate, hp)
  window = jax.tree.map(
      lambda a, b: jnp.where(new, a, b), first, controls.window
  )
  return controls._replace(
      learning_rate=learning_rate, scales=scales, window=window
  )


def _next_window(
    window: window_lib.WindowState,
    next_length: jax.Array,
    measure_steps: jax.Array,
    scales: scales_lib.Scales,
) -> window_lib.WindowState:
  """A fresh window of `next_length` losses, or this one going on (its
  buffer merged when full); then its next event."""
  fresh = window_lib.fresh(window, next_length, measure_steps)
  going_on = window_lib.make_room(window)
  window = jax.tree.map(
      lambda a, b: jnp.where(next_length > 0, a, b), fresh, going_on
  )
  return window_lib.schedule(window, scales_lib.known(scales))


def _decide_step(
    controls: _Controls,
    value: jax.Array,
    diverged: jax.Array,
    hp: Hyperparameters,
    gradient: _Gradient,
    step: jax.Array,
    static: _Static,
) -> tuple[_Controls, jax.Array, Verdict]:
  """The rare branch: fix the scales, ask the policy, apply its verdict to
  the controls. Returns the controls, whether a window was tested, and the
  verdict.

  `diverged` is a confirmed divergence (`_Faults.confirmed`). A model
  collapsed to a trivial predictor (`collapse.py`) at the end of two
  windows in a row counts as one: its exponential decay is the output bias
  fitting a constant, and only a return to the anchor revives the model. A
  dead model stays dead, so it is seen twice; a batch that happens to reach
  few parameters (a short document) does not repeat.
  """
  controls = _fix_scales(controls, value, hp, gradient, static.policy)
  scales = controls.scales
  ended = window_lib.is_complete(controls.window)
  looks_collapsed = ended & collapse.has_collapsed(
      gradient.live, scales.live, value - hp.loss_floor, scales.loss
  )
  diverged = diverged | (looks_collapsed & controls.collapse_seen)
  complete = ended & ~diverged
  verdict, policy_state = static.policy.decide(
      Event(
          phase=controls.phase, learning_rate=controls.learning_rate,
          p_value=controls.p_value, window=controls.window, scales=scales,
          complete=complete, diverged=diverged, step=step,
      ),
      controls.policy_state, hp, static.mode,
  )
  bump = lambda count, happened: jnp.where(
      happened, optax.safe_increment(count), count
  )
  learning_rate = controls.learning_rate * verdict.rate_factor
  return _Controls(
      learning_rate=learning_rate,
      phase=verdict.phase,
      num_cuts=bump(controls.num_cuts, verdict.rate_factor < 1),
      num_resets=bump(controls.num_resets, verdict.restore),
      p_value=verdict.p_value,
      decision=verdict.decision,
      window=_next_window(
          controls.window, verdict.next_length, verdict.measure_steps, scales
      ),
      scales=scales,
      collapse_seen=jnp.where(
          verdict.restore, False,
          jnp.where(ended, looks_collapsed, controls.collapse_seen),
      ),
      policy_state=policy_state,
      history=history_lib.record(
          controls.history, verdict, controls.phase, controls.learning_rate,
          learning_rate, optax.safe_increment(step),
      ),
      restore=verdict.restore,
  ), complete, verdict


def _move_slots(
    slots: _Slots,
    params: optax.Params,
    controls: _Controls,
    tested: jax.Array,
    verdict: Verdict,
    static: _Static,
) -> _Slots:
  """The parameter copies after a decision: the saved point takes the
  parameters on `verdict.save`; the anchor takes the saved point on
  `verdict.recall`, else follows a tested window (`_follow_windows`)."""
  anchor, saved = slots
  if static.mode.follows:
    anchor = _follow_windows(
        anchor, params, controls, tested & ~verdict.restore, static.mode
    )
  if static.policy.saves_parameters:
    anchor = jax.tree.map(
        lambda s, a: jnp.where(verdict.recall, s, a), saved, anchor
    )
    saved = jax.tree.map(
        lambda p, s: jnp.where(verdict.save, p, s), params, saved
    )
  return _Slots(anchor, saved)


def _follow_windows(
    anchor: optax.Params,
    params: optax.Params,
    controls: _Controls,
    tested: jax.Array,
    mode: AnchorMode,
) -> optax.Params:
  """The anchor after a decision: the parameters that completed the window.

  Their loss passed through a whole window, so they are the last good ones:
  a confirmed divergence returns there and loses at most a window. With
  `reset=True` the search's anchor stays the initial parameters (the paper's
  restart), so the anchor follows the windows from the first passed search
  test on: one anchor, two roles, no second copy of the parameters.

  A window that ends on a model that looks collapsed (`collapse.py`) is not
  a good point: the anchor stays, so that a confirmed collapse returns to
  the last healthy parameters (the initial ones if none was). Called in the
  rare branch only, where a window can end, so that a common step does not
  copy the anchor.
  """
  completed = tested & ~controls.collapse_seen
  if mode is AnchorMode.TUNING_WINDOWS:
    completed &= controls.phase == Phase.TUNING
  return jax.tree.map(lambda a, p: jnp.where(completed, p, a), anchor, params)


def _decide_and_follow(carry, params, value, faults, hp, gradient, step, *,
                       static: _Static):
  """`_decide_step`, then the parameter copies move (`_move_slots`).

  `carry` is `(controls, slots)`.
  """
  controls, slots = carry
  controls, tested, verdict = _decide_step(
      controls, value, faults.confirmed, hp, gradient, step, static
  )
  return controls, _move_slots(slots, params, controls, tested, verdict, static)


def _measure(
    window: window_lib.WindowState,
    correction: correction_lib.CorrectionState,
    grads: optax.Updates,
    fault: jax.Array,
) -> tuple[window_lib.WindowState, correction_lib.CorrectionState]:
  """Adds a gradient to the correction's sums; sets `N` after `W` of them.

  A faulty step's gradient is left out, as its loss is left out of the window.
  """
  measuring = window.measuring & ~fault
  # The window restarts with every rate change: its first loss starts the sums.
  first = window.losses.count == 1
  added = correction_lib.accumulate(correction, grads, first)
  correction = jax.tree.map(
      lambda new, old: jnp.where(measuring, new, old), added, correction
  )
  window = lazy_update(
      measuring & window_lib.is_measured(window),
      lambda w, c: window_lib.end_measurement(w, correction_lib.factor(c)),
      window, correction,
      batched="select",
  )
  return window, correction


def _measure_then_decide(carry, params, grads, value, faults, hp, gradient,
                         step, *, static: _Static):
  """The rare branch with the correction: `_measure`, then decide if needed.

  `carry` is `(controls, correction, slots)`.
  """
  controls, correction, slots = carry
  window, correction = _measure(controls.window, correction, grads, faults.fault)
  controls = controls._replace(window=window)
  controls, slots = lazy_update(
      _needs_decision(controls.window, faults),
      functools.partial(_decide_and_follow, static=static),
      (controls, slots), params, value, faults, hp, gradient, step,
  )
  return controls, correction, slots


def _needs_decision(window: window_lib.WindowState, faults: _Faults) -> jax.Array:
  """The window's next event, or a confirmed divergence."""
  return window_lib.at_event(window) | faults.confirmed


def _live_entries_when_needed(
    window: window_lib.WindowState, grads: optax.Updates, dtype: jnp.dtype
) -> jax.Array:
  """The gradient's live entries at the steps that may decide, else 0.

  A `lax.cond` with a scalar output, outside the decision's while loop, so
  that the loop's operands stay the scalars and the window; in one process
  the check measured no cost per step (`docs/design.md`, section 7).
  """
  return lazy_cond(
      window_lib.at_event(window),
      lambda g: collapse.live_entries(g, dtype),
      lambda g: jnp.zeros((), dtype),
      grads,
  )


def _rare_branches(
    static: _Static,
    controls: _Controls,
    correction: correction_lib.CorrectionState,
    slots: _Slots,
    params: optax.Params,
    grads: optax.Updates,
    value: jax.Array,
    gradient: _Gradient,
    faults: _Faults,
    hp: Hyperparameters,
    step: jax.Array,
) -> tuple[_Controls, correction_lib.CorrectionState, _Slots]:
  """Measures the correction and decides, each only when needed; the
  parameter copies move (`_move_slots`) in the same branch."""
  # Decisions are piecewise constant: no derivative flows through them
  # (and none needs to be transposed through the branches' while loops).
  # The copies of the parameters are constants too.
  controls, correction, grads, value, gradient, faults, hp = (
      jax.lax.stop_gradient(
          (controls, correction, grads, value, gradient, faults, hp)
      )
  )
  # A copy travels in the branches' carries only when it can move, and only
  # the branch that decides writes it: a common step does not copy it.
  moves = _Slots(
      anchor=static.mode.follows or static.policy.saves_parameters,
      saved=static.policy.saves_parameters,
  )
  carried = _Slots(*(
      jax.lax.stop_gradient(x) if move else ()
      for x, move in zip(slots, moves)
  ))
  params = jax.lax.stop_gradient(params) if any(moves) else ()
  needs_decision = _needs_decision(controls.window, faults)
  if not static.policy.measures_correction:
    controls, carried = lazy_update(
        needs_decision, functools.partial(_decide_and_follow, static=static),
        (controls, carried), params, value, faults, hp, gradient, step,
    )
  else:
    # One branch for both rare cases (measuring, deciding), so that a common
    # step checks a single predicate.
    controls, correction, carried = lazy_update(
        (controls.window.measuring & ~faults.fault) | needs_decision,
        functools.partial(_measure_then_decide, static=static),
        (controls, correction, carried), params, grads, value, faults,
        hp, gradient, step,
        batched="select",
    )
  slots = _Slots(*(
      new if move else old for new, old, move in zip(carried, slots, moves)
  ))
  return controls, correction, slots


# ----------------------------------------------------------------------------
# Applying the verdict.


def cooldown(step: jax.Array, horizon: jax.Array) -> jax.Array:
  """The factor on the rate at `step` of a run of `horizon` updates: 1, then
  down to 0 linearly over the last `COOLDOWN` of them (as warmup-stable-decay
  schedules end)."""
  length = COOLDOWN * horizon
  return jnp.clip((horizon - step) / length, 0, 1).astype(horizon.dtype)


def _apply_verdict(
    updates: optax.Updates,
    params: optax.Params,
    anchor: optax.Params,
    learning_rate: jax.Array,
    restore: jax.Array,
    skipped: jax.Array,
) -> optax.Updates:
  """`-eta * u`, the step back to the anchor (`anchor - params`), or 0."""
  return jax.tree.map(
      lambda u, p, a: jnp.where(
          restore, a - p, jnp.where(skipped, 0, -learning_rate * u)
      ).astype(u.dtype),
      updates, params, anchor,
  )


def _keep_or_restart_inner(
    inner: optax.GradientTransformation,
    new: optax.OptState,
    old: optax.OptState,
    anchor: optax.Params,
    restore: jax.Array,
    skipped: jax.Array,
) -> optax.OptState:
  """`inner`'s state: fresh after a restore, as it was after a skipped step.

  Selects, not a branch: reverse-mode derivatives flow through `inner`.
  """
  return jax.tree.map(
      lambda fresh, kept, s: jnp.where(
          restore, fresh, jnp.where(skipped, kept, s)
      ),
      inner.init(anchor), old, new,
  )


# ----------------------------------------------------------------------------
# init and update.


class _Config(NamedTuple):
  """The arguments of `exptest`, checked and resolved."""

  learning_rate: jax.typing.ArrayLike
  alpha: jax.typing.ArrayLike
  beta: jax.typing.ArrayLike
  divergence_factor: Optional[jax.typing.ArrayLike]
  divergence_patience: jax.typing.ArrayLike
  loss_floor: jax.typing.ArrayLike
  horizon: Optional[jax.typing.ArrayLike]
  inner: Optional[optax.GradientTransformationExtraArgs]
  policy: Policy
  mode: AnchorMode
  capacity: int
  rule: inner_rules.InnerRule
  # Built by `optax.inject_hyperparams`: `update` checks the injected rate.
  injected: bool

  def rule_for(self, params: optax.Params) -> inner_rules.InnerRule:
    """The inner rule; probed again on `params`' tree when the scalar probe
    could not tell (an inner with a mask over the parameters' tree)."""
    if self.rule.kind != inner_rules.UNKNOWN:
      return self.rule
    leaves, treedef = jax.tree.flatten(params)
    return inner_rules.classify_on_tree(
        self.inner, treedef, tuple(jnp.ndim(x) for x in leaves))

  def hyperparameters(self, dtype: jnp.dtype) -> Hyperparameters:
    factor = jnp.inf if self.divergence_factor is None else self.divergence_factor
    return Hyperparameters(
        alpha=jnp.asarray(self.alpha, dtype),
        beta=jnp.asarray(self.beta, dtype),
        divergence_factor=jnp.asarray(factor, dtype),
        divergence_patience=jnp.asarray(self.divergence_patience, dtype),
        loss_floor=jnp.asarray(self.loss_floor, dtype),
        horizon=jnp.asarray(
            jnp.inf if self.horizon is None else self.horizon, dtype
        ),
    )

  def static(self, params: optax.Params) -> _Static:
    return _Static(
        policy=self.policy, mode=self.mode, inner=self.inner,
        measures_rho=self.rule_for(params).measures_rho,
        cools_down=self.horizon is not None,
    )


def _init(config: _Config, params: optax.Params) -> ExpTestState:
  """`init`: the starting rate, an empty window, the anchor."""
  usage.warn_if_stateful_before(params)
  dtype = _float_dtype(params)
  rule = config.rule_for(params)
  policy = config.policy
  zero = jnp.zeros((), jnp.int32)
  if policy.measures_correction:
    correction = correction_lib.init(params, dtype)
  else:
    correction = correction_lib.CorrectionState(jnp.zeros((), dtype), ())
  return ExpTestState(
      learning_rate=jnp.asarray(
          policy.start_rate(config.learning_rate, rule.rho), dtype
      ),
      phase=zero,
      num_cuts=zero,
      num_resets=zero,
      num_skipped=zero,
      p_value=jnp.ones((), dtype),
      decision=zero,
      step=zero,
      faults_in_a_row=zero,
      window=window_lib.init(
          config.capacity, dtype, measuring=policy.measures_correction
      ),
      scales=scales_lib.init(dtype, rule.rho),
      collapse_seen=jnp.zeros((), bool),
      policy_state=policy.init_state(dtype),
      history=history_lib.init(dtype, config.learning_rate),
      correction=correction,
      anchor_params=params,
      saved_params=params if policy.saves_parameters else (),
      inner_state=config.inner.init(params) if config.inner else optax.EmptyState(),
  )


def _update(
    config: _Config,
    updates: optax.Updates,
    state: ExpTestState,
    params: Optional[optax.Params],
    value: Optional[jax.typing.ArrayLike],
    extra_args: dict[str, Any],
) -> tuple[optax.Updates, ExpTestState]:
  """`update`: the inner transformation, then `_record_decide_apply`."""
  arguments.check_update_args(value, params, extra_args)
  if config.injected:
    state = state._replace(
        history=usage.check_given_rate(state.history, config.learning_rate)
    )
  dtype = state.learning_rate.dtype
  value = jnp.asarray(value).astype(dtype)
  grads, inner_state = updates, state.inner_state
  if config.inner is not None:
    updates, inner_state = config.inner.update(
        grads, inner_state, params, value=value, **extra_args
    )
  return _record_decide_apply(
      config.static(params), config.hyperparameters(dtype), grads, updates,
      inner_state, state, params, value,
  )


def _gradient(
    static: _Static,
    state: ExpTestState,
    window: window_lib.WindowState,
    grads: optax.Updates,
    updates: optax.Updates,
    grad_squares: jax.Array,
) -> _Gradient:
  """What the decision branch reads of the gradient, each only when needed
  (`window` holds this step's loss)."""
  dtype = state.learning_rate.dtype
  # Read only by the decisions, which are piecewise constant: no derivative.
  grads, updates = jax.lax.stop_gradient((grads, updates))
  rho = jnp.ones((), dtype)
  if static.measures_rho:
    # Measured at the first finite loss only: the rare case is the true
    # branch, so that under `vmap` the common one runs vmapped, not per arm.
    rho = lazy_cond(
        ~scales_lib.known(state.scales),
        lambda g, u: inner_rules.measured_rho(g, u, dtype),
        lambda g, u: jnp.ones((), dtype),
        grads, updates,
    )
  return _Gradient(
      live=_live_entries_when_needed(window, grads, dtype),
      norm_sq=grad_squares,
      rho=rho,
  )


# Jitted so that an eager `update` (a docstring, a notebook) compiles once:
# the branches' while loops would otherwise compile on every call. Inside a
# user's `jit` it is inlined.
@functools.partial(jax.jit, static_argnums=0)
def _record_decide_apply(
    static: _Static,
    hp: Hyperparameters,
    grads: optax.Updates,
    updates: optax.Updates,
    inner_state: optax.OptState,
    state: ExpTestState,
    params: optax.Params,
    value: jax.Array,
) -> tuple[optax.Updates, ExpTestState]:
  """Records the loss, decides when needed, and applies the verdict."""
  # The per-step path: the fault check and the loss's push (a faulty step's
  # loss is left out).
  flag, grad_squares = finite.non_finite_flag(
      value, grads, updates if static.inner else ()
  )
  faults = _count_faults(
      _is_fault(state.scales, value, flag, grad_squares, hp,
                state.learning_rate),
      state.faults_in_a_row,
      hp.divergence_patience,
  )
  window = window_lib.record(state.window, value, skipped=faults.fault)
  controls = _Controls(
      learning_rate=state.learning_rate, phase=state.phase,
      num_cuts=state.num_cuts, num_resets=state.num_resets,
      p_value=state.p_value, decision=jnp.zeros((), jnp.int32),
      window=window, scales=state.scales, collapse_seen=state.collapse_seen,
      policy_state=state.policy_state, history=state.history,
      restore=jnp.zeros((), bool),
  )
  # A restore's anchor is the one the branch leaves: it moves on a tested
  # window only when nothing is restored, or to the saved point it returns to.
  controls, correction, slots = _rare_branches(
      static, controls, state.correction,
      _Slots(state.anchor_params, state.saved_params), params, grads, value,
      _gradient(static, state, window, grads, updates, grad_squares), faults,
      hp, state.step,
  )
  anchor = slots.anchor
  learning_rate = controls.learning_rate
  if static.cools_down:
    learning_rate = learning_rate * cooldown(state.step, hp.horizon)
  updates = _apply_verdict(
      updates, params, anchor, learning_rate, controls.restore,
      faults.skipped,
  )
  if static.inner is not None:
    inner_state = _keep_or_restart_inner(
        static.inner, inner_state, state.inner_state, anchor,
        controls.restore, faults.skipped,
    )
  return updates, _next_state(
      state, controls, faults, correction, slots, inner_state
  )


def _next_state(
    state: ExpTestState,
    controls: _Controls,
    faults: _Faults,
    correction: correction_lib.CorrectionState,
    slots: _Slots,
    inner_state: optax.OptState,
) -> ExpTestState:
  """The state after this step. A skipped step takes no decision: the rare
  branches did not run."""
  decision = jnp.where(faults.skipped, Decision.SKIPPED, controls.decision)
  return ExpTestState(
      learning_rate=controls.learning_rate,
      phase=controls.phase,
      num_cuts=controls.num_cuts,
      num_resets=controls.num_resets,
      num_skipped=jnp.where(
          faults.skipped, optax.safe_increment(state.num_skipped),
          state.num_skipped,
      ),
      p_value=controls.p_value,
      decision=decision.astype(jnp.int32),
      step=optax.safe_increment(state.step),  # After the branch: no copy.
      faults_in_a_row=faults.in_a_row,
      window=controls.window,
      scales=controls.scales,
      collapse_seen=controls.collapse_seen,
      policy_state=controls.policy_state,
      history=controls.history,
      correction=correction,
      anchor_params=slots.anchor,
      saved_params=slots.saved,
      inner_state=inner_state,
  )


def exptest(
    learning_rate: "jax.typing.ArrayLike",
    alpha: "jax.typing.ArrayLike" = 0.05,
    beta: "jax.typing.ArrayLike" = 0.33,
    *,
    inner: Optional[optax.GradientTransformation] = None,
    sgd_correction: bool = True,
    reset: bool = True,
    divergence_factor: "Optional[jax.typing.ArrayLike]" = 1e3,
    divergence_patience: int = 3,
    anchor: str = "window",
    loss_floor: "jax.typing.ArrayLike" = 0.0,
    capacity: Optional[int] = None,
    policy: Union[None, str, Policy] = None,
    horizon: Optional[jax.typing.ArrayLike] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""ExpTest: searches the learning rate from an upper bound, then tunes it.

  Sets the rate of SGD (or of `inner`'s update) by hypothesis tests on the
  training loss, which every `update` receives as `value`. The run starts at
  `learning_rate`, an upper bound such as `lr_upper_bound(x)`. While
  searching, each window of losses (its length set by the loss's scale and
  the rate) gets a test for an exponential decay: no decay at level `alpha`
  multiplies the rate by `beta` and restarts from `init`'s parameters; a
  decay ends the search. Tuning, the rate is cut by `beta` whenever a
  window's loss stops decreasing. A bad batch (a non-finite or outsized
  loss or gradient) is skipped; `divergence_patience` in a row cut the rate
  and return to the last good parameters. `exptest_summary(state)` gives
  the rate, the phase and the run's last changes. Numeric hyperparameters
  may be traced (one per vmapped arm). The algorithm, and where it departs
  from the paper: `docs/design.md`, sections 3, 4 and 4a.

  Args:
    learning_rate: the starting rate, an upper bound on a stable one
      (`lr_upper_bound`, `lr_upper_bound_from_model`); read once, by `init`.
      With `inner`, in gradient-descent units: the run starts where
      `inner`'s step decreases the loss as gradient descent's at this rate.
    alpha: significance level of both tests, in (0, 1). Default 0.05.
    beta: the factor each cut multiplies the rate by, in (0, 1) (not a
      momentum). Default 0.33.
    inner: a transformation of the gradient that ExpTest then scales, such
      as `optax.trace(0.9)` or `optax.scale_by_adam()`; ExpTest restarts its
      state on a reset. Put it here, not before ExpTest in `optax.chain`
      (that warns at `init`). Default None (SGD).
    sgd_correction: widen the windows by the mini-batch gradients' noise,
      measured after each rate change; False for full-batch training.
      Default True.
    reset: return to `init`'s parameters after a failed search test (the
      paper's Algorithm 1). Default True.
    divergence_factor: a loss more than this many times its first value
      (above `loss_floor`), or a gradient norm this many times the first,
      is a fault; None: never (the authors' code). Default 1e3.
    divergence_patience: the faults in a row that confirm a divergence
      (an int of at least 1). Default 3.
    anchor: where a divergence while tuning returns: `"window"`, the
      parameters that completed the last window; `"init"`, those of `init`,
      searching again. Default `"window"`.
    loss_floor: a lower bound of the loss, from which its scale is measured
      (set it for losses that can be negative). Default 0.0.
    capacity: the window's loss slots (a static int, at least 4); longer
      windows are block-averaged. Default None (1024).
    policy: the rules that turn the losses into decisions: `"paper"` (the
      paper's Algorithm 1), `"probing"` (probes both ways from the start,
      then tests on windows that double with the run; for deep networks,
      `docs/design.md` section 3a), or an `optax_exptest.policies.Policy`.
      Default None (the paper's).
    horizon: the run's number of updates, if known: the rate then decays
      linearly to 0 over its last fifth (a warmup-stable-decay ending), and
      the probing policy's probes take at most a sixteenth of it. Default
      None (an anytime run).

  Returns:
    An `optax.GradientTransformationExtraArgs` whose `update(updates, state,
    params, value=loss)` needs `params` and the loss at `params`.

  Raises:
    ValueError: a hyperparameter out of range or not a scalar.

  Examples:
    >>> import jax, jax.numpy as jnp, optax, optax_exptest
    >>> x = jax.random.normal(jax.random.key(0), (256, 4))
    >>> y = x @ jnp.array([1.0, -2.0, 3.0, 0.5])
    >>> loss_fn = lambda w: 0.5 * jnp.mean((x @ w - y) ** 2)
    >>> eta = optax_exptest.lr_upper_bound(x, loss="mse")
    >>> tx = optax_exptest.exptest(eta, sgd_correction=False)  # full batch
    >>> params = jnp.zeros(4)
    >>> state = tx.init(params)
    >>> for _ in range(200):
    ...   loss, grads = jax.value_and_grad(loss_fn)(params)
    ...   updates, state = tx.update(grads, state, params, value=loss)
    ...   params = optax.apply_updates(params, updates)
    >>> summary = optax_exptest.exptest_summary(state)
    >>> summary["phase_name"], bool(loss_fn(params) < 1e-6)
    ('tuning', True)

  References:
    Chaudhry & Mizuno, ExpTest: Automating Learning Rate Searching
    and Tuning with Insights from Linearized Neural Networks, 2024,
    https://arxiv.org/abs/2411.16975
  """
  arguments.check_range("learning_rate", learning_rate, 0.0, math.inf)
  arguments.check_range("alpha", alpha, 0.0, 1.0)
  arguments.check_range("beta", beta, 0.0, 1.0)
  if divergence_factor is not None:
    arguments.check_range("divergence_factor", divergence_factor, 1.0, math.inf)
  arguments.check_range("loss_floor", loss_floor, -math.inf, math.inf)
  arguments.check_patience(divergence_patience)
  arguments.check_anchor(anchor)
  arguments.check_policy(policy)
  if horizon is not None:
    arguments.check_range("horizon", horizon, 0.0, math.inf)
  if inner is not None:
    inner = optax.with_extra_args_support(inner)
  config = _Config(
      learning_rate=learning_rate, alpha=alpha, beta=beta,
      divergence_factor=divergence_factor,
      divergence_patience=divergence_patience, loss_floor=loss_floor,
      horizon=horizon, inner=inner,
      policy=arguments.resolve_policy(policy, sgd_correction),
      mode=AnchorMode.of(reset, anchor),
      capacity=arguments.static_capacity(capacity),
      rule=inner_rules.classify(inner),
      injected=usage.called_by_inject_hyperparams(),
  )

  def update_fn(
      updates: optax.Updates,
      state: ExpTestState,
      params: Optional[optax.Params] = None,
      *,
      value: Optional[jax.typing.ArrayLike] = None,
      **extra_args: Any,
  ) -> tuple[optax.Updates, ExpTestState]:
    return _update(config, updates, state, params, value, extra_args)

  return optax.GradientTransformationExtraArgs(
      functools.partial(_init, config), update_fn
  )
