"""ExpTest: learning-rate search and tuning by hypothesis tests on the loss.

Chaudhry & Mizuno, "ExpTest: Automating Learning Rate Searching and
Tuning with Insights from Linearized Neural Networks", arXiv 2411.16975.

The transformation starts at an upper-bound rate, records the training loss
in a fixed-size window, and at the end of each window tests it:

* searching: is the loss decaying exponentially (F-test, exponential against
  linear fit)? Yes: switch to tuning for good. No: cut the rate by `beta` and
  restart from the initial parameters.
* tuning: is the loss still decreasing (one-sided t-test on the slope)? No:
  cut the rate by `beta`.

The per-step path only pushes the loss into the window, checks that the
loss and the gradients are finite, and scales the updates; everything else
(fixing the first window, the mini-batch correction, the tests, merging the
window's blocks) runs in rare branches that update the state in place and
stay branches under `jax.vmap` (see `lazy_cond.lazy_update`).
"""

import enum
import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from optax_exptest._src import loss_window
from optax_exptest._src import stats
from optax_exptest._src.lazy_cond import lazy_cond
from optax_exptest._src.lazy_cond import lazy_update

# Windows are counted in int32; this cap keeps `round(c_w * W)` representable.
MAX_WINDOW = 2**30


class Phase(enum.IntEnum):
  """The values of `ExpTestState.phase`.

  Examples:
    >>> import jax.numpy as jnp, optax_exptest
    >>> state = optax_exptest.exptest(0.1).init(jnp.zeros(3))
    >>> optax_exptest.Phase(int(state.phase)).name
    'SEARCHING'
  """

  SEARCHING = 0
  TUNING = 1


class Decision(enum.IntEnum):
  """What an update decided, the values of `ExpTestState.decision`.

  Examples:
    >>> import jax.numpy as jnp, optax_exptest
    >>> tx = optax_exptest.exptest(0.1)
    >>> params = jnp.zeros(3)
    >>> _, state = tx.update(jnp.ones(3), tx.init(params), params,
    ...                      value=jnp.nan)
    >>> optax_exptest.Decision(int(state.decision)).name
    'DIVERGED'
  """

  NONE = 0  # No test ended at this step.
  EXPONENTIAL = 1  # Searching: exponential decay detected; now tuning.
  RESTART = 2  # Searching: no exponential decay; rate cut, parameters reset.
  DECREASING = 3  # Tuning: the loss still decreases; rate kept.
  PLATEAU = 4  # Tuning: plateau; rate cut.
  DIVERGED = 5  # Non-finite values or a loss above divergence_factor * L0.


class ExpTestState(NamedTuple):
  """State of `exptest`: arrays only, so it jits, vmaps and checkpoints.

  Attributes:
    learning_rate: the current rate (float scalar).
    phase: `Phase` (int32): 0 searching, 1 tuning.
    num_cuts: number of rate cuts so far (int32).
    num_resets: number of resets to the initial parameters (int32).
    p_value: p-value of the last test (1.0 before the first).
    decision: `Decision` taken by the last update (int32).
    step: number of updates so far (int32).
    initial_loss: L0, the first loss seen.
    base_window: W, the window of the current rate before the mini-batch
      correction (int32).
    window_length: N, the number of losses the current window is tested at
      (int32); equals W until the correction has been measured.
    correcting: whether the mini-batch correction is still being measured.
    next_event: the window count at which the rare branch runs next (the
      first loss, the end of the correction, the end of the window, or a
      full loss buffer), so that the per-step path compares one integer.
    grad_norm_sum: S, the sum of gradient norms over the correction steps.
    window: the block-averaged losses of the current window.
    grad_sum: R, the sum of gradients over the correction steps (a tree like
      the gradients; `()` with `sgd_correction=False`).
    initial_params: the parameters given to `init` (`()` with `reset=False`).
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
  p_value: jax.Array
  decision: jax.Array
  step: jax.Array
  initial_loss: jax.Array
  base_window: jax.Array
  window_length: jax.Array
  correcting: jax.Array
  next_event: jax.Array
  grad_norm_sum: jax.Array
  window: loss_window.LossWindow
  grad_sum: optax.Updates
  initial_params: optax.Params
  inner_state: optax.OptState


def window_size(initial_loss: jax.Array, learning_rate: jax.Array) -> jax.Array:
  """The paper's base window `W = round(2 sqrt(2) L0 / (e eta))`.

  Rounds half to even, clips to `[1, MAX_WINDOW]`; a non-finite ratio (a zero
  rate) gives `MAX_WINDOW`.

  Args:
    initial_loss: L0, the first loss of training.
    learning_rate: the current rate eta.

  Returns:
    An int32 scalar.
  """
  w = 2.0 * math.sqrt(2.0) * initial_loss / (math.e * learning_rate)
  w = jnp.where(jnp.isfinite(w), w, MAX_WINDOW)
  return jnp.clip(jnp.round(w), 1, MAX_WINDOW).astype(jnp.int32)


def _test_length(n: jax.Array) -> jax.Array:
  """A window needs at least 4 losses for both fits to leave a residual."""
  return jnp.clip(n, 4, MAX_WINDOW).astype(jnp.int32)


def _next_event(state: ExpTestState) -> jax.Array:
  """The window count at which the rare branch must run next."""
  capacity = state.window.sums.shape[0]
  return jnp.minimum(
      jnp.minimum(
          state.window_length,
          jnp.where(state.correcting, state.base_window, MAX_WINDOW),
      ),
      jnp.minimum(capacity * state.window.block_size, MAX_WINDOW),
  ).astype(jnp.int32)


def _float_dtype(params: Any) -> jnp.dtype:
  """The state's float dtype: the widest parameter float, at least float32."""
  dtypes = [
      x.dtype for x in jax.tree.leaves(params)
      if jnp.issubdtype(x.dtype, jnp.floating)
  ]
  return jnp.result_type(jnp.float32, *dtypes)


def _sum_of_squares(tree: Any, dtype: jnp.dtype) -> jax.Array:
  leaves = jax.tree.leaves(tree)
  return sum(
      (jnp.sum(jnp.square(x.astype(dtype))) for x in leaves),
      start=jnp.zeros((), dtype),
  )


def _test_window(window: loss_window.LossWindow, phase: jax.Array) -> jax.Array:
  """The p-value of the test the phase calls for."""
  t, y, w = loss_window.points(window)
  p = lazy_cond(
      phase == Phase.SEARCHING,
      stats.weighted_exponential_test,
      stats.weighted_plateau_test,
      t, y, w,
  )
  return p.astype(window.sums.dtype)


def _check_hyperparameter(name: str, value: Any, low: float, high: float):
  """Checks `low < value < high` when `value` is concrete (not traced)."""
  try:
    v = float(value)
  except (TypeError, jax.errors.ConcretizationTypeError):
    return  # Traced (e.g. one value per vmapped arm): checked by the user.
  if not low < v < high:
    raise ValueError(
        f"exptest: {name} must lie in ({low}, {high}), got {name}={value!r}."
    )


def exptest(
    learning_rate: jax.typing.ArrayLike,
    alpha: jax.typing.ArrayLike = 0.05,
    beta: jax.typing.ArrayLike = 0.33,
    *,
    inner: Optional[optax.GradientTransformation] = None,
    sgd_correction: bool = True,
    reset: bool = True,
    divergence_factor: Optional[float] = 1e3,
    capacity: int = 1024,
) -> optax.GradientTransformationExtraArgs:
  r"""ExpTest: searches the learning rate, then cuts it on plateaus.

  Starts at `learning_rate` (an upper bound such as `lr_upper_bound(x)`)
  and records the loss passed as `value` at every update. With `L0` the first
  loss and `eta` the current rate, a window holds
  `N = max(4, round(c_w W))` losses, `W = round(2 sqrt(2) L0 / (e eta))`
  (half to even), where `c_w = sum_t ||g_t|| / ||sum_t g_t||` over the first
  `W` steps after each rate change measures how much mini-batch gradients
  zig-zag (`c_w = 1` with `sgd_correction=False`, for full-batch training).
  When the window is full:

  * searching: the F-test of `stats.weighted_exponential_test`. If
    `p < alpha` the loss decays exponentially: switch to tuning for good.
    Otherwise `eta *= beta`, and with `reset=True` the update brings the
    parameters back to those given to `init` and re-initialises `inner`'s
    state, so the run continues as a fresh run at the new rate.
  * tuning: the one-sided t-test of `stats.weighted_plateau_test`. If
    `p >= alpha` (no significant decrease) `eta *= beta`.

  A new window starts after every test. A decision taken at the update of
  step `t` (the update that receives the loss completing the window) applies
  to that update already. The correction is measured again after every rate
  change; after a passed test the next window keeps the same length.

  Divergence is cut short: a non-finite loss, gradient or inner update, or a
  loss above `divergence_factor * L0`, counts at once as a failed test: the
  rate is cut and, with `reset=True`, the parameters go back to the initial
  ones and the phase to searching (with `reset=False` the update is skipped).
  A non-finite value never reaches the parameters.

  Updates are `-eta * u`, where `u` is the incoming update (or `inner`'s
  output): ExpTest fills the learning-rate slot. For momentum or Adam with a
  faithful reset, pass it as `inner=optax.trace(0.9)` or
  `inner=optax.scale_by_adam()`: ExpTest owns that state and re-initialises
  it on a reset. In `optax.chain(optax.trace(0.9), exptest(...))` the
  momentum is not reset: after a restart the first updates still carry the
  old momentum.

  Memory: the state holds a copy of the initial parameters (with `reset`),
  a gradient sum (with `sgd_correction`) and `capacity` loss slots, whatever
  the window length; windows longer than `capacity` are block-averaged (see
  `loss_window`), and the tests' degrees of freedom follow the number of
  occupied slots.

  Args:
    learning_rate: the starting rate, e.g. `lr_upper_bound(x_train)`. May be
      a traced array (one per vmapped arm).
    alpha: significance level of both tests, in (0, 1). May be traced.
    beta: factor of each rate cut, in (0, 1). May be traced.
    inner: an optional transformation applied to the gradients before
      ExpTest scales them (momentum, Adam's scaling); ExpTest re-initialises
      its state on a reset.
    sgd_correction: measure the mini-batch window correction `c_w`; set
      False for full-batch training.
    reset: on a failed search, return to the initial parameters (the paper's
      Algorithm 1). Requires `params` in `update`.
    divergence_factor: a loss above `divergence_factor * L0` counts as a
      failed test at once; `None` waits for the window's end as the authors'
      code does.
    capacity: number of slots of the loss window (static, at least 4).

  Returns:
    An `optax.GradientTransformationExtraArgs` whose `update` takes the loss
    at `params` as the keyword `value`.

  Raises:
    ValueError: a hyperparameter out of range.

  Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> import optax_exptest
    >>> loss = lambda p: jnp.sum((p - 1.0) ** 2)
    >>> tx = optax_exptest.exptest(learning_rate=0.5, sgd_correction=False)
    >>> params = jnp.zeros(3)
    >>> state = tx.init(params)
    >>> for _ in range(40):
    ...   value, grads = jax.value_and_grad(loss)(params)
    ...   updates, state = tx.update(grads, state, params, value=value)
    ...   params = optax.apply_updates(params, updates)
    >>> bool(loss(params) < 1e-4), int(state.phase)
    (True, 1)

  References:
    Chaudhry & Mizuno, ExpTest: Automating Learning Rate Searching
    and Tuning with Insights from Linearized Neural Networks, 2024,
    https://arxiv.org/abs/2411.16975
  """
  _check_hyperparameter("learning_rate", learning_rate, 0.0, math.inf)
  _check_hyperparameter("alpha", alpha, 0.0, 1.0)
  _check_hyperparameter("beta", beta, 0.0, 1.0)
  if not isinstance(capacity, int) or capacity < 4:
    raise ValueError(
        f"exptest: capacity must be an int of at least 4 (the fits need 4"
        f" points), got capacity={capacity!r}."
    )
  if divergence_factor is not None and not divergence_factor > 1.0:
    raise ValueError(
        "exptest: divergence_factor must be above 1 or None, got"
        f" divergence_factor={divergence_factor!r}."
    )
  if inner is not None:
    inner = optax.with_extra_args_support(inner)

  def init_fn(params: optax.Params) -> ExpTestState:
    dtype = _float_dtype(params)
    zero = jnp.zeros((), jnp.int32)
    return ExpTestState(
        learning_rate=jnp.asarray(learning_rate, dtype),
        phase=zero,
        num_cuts=zero,
        num_resets=zero,
        p_value=jnp.ones((), dtype),
        decision=zero,
        step=zero,
        initial_loss=jnp.zeros((), dtype),
        # Unknown until the first loss arrives: no test can fire before.
        base_window=jnp.asarray(MAX_WINDOW, jnp.int32),
        window_length=jnp.asarray(MAX_WINDOW, jnp.int32),
        correcting=jnp.asarray(sgd_correction),
        next_event=jnp.ones((), jnp.int32),  # the first loss fixes L0 and W
        grad_norm_sum=jnp.zeros((), dtype),
        window=loss_window.empty(capacity, dtype),
        grad_sum=optax.tree.zeros_like(params) if sgd_correction else (),
        initial_params=params if reset else (),
        inner_state=inner.init(params) if inner else optax.EmptyState(),
    )

  def new_rate(state: ExpTestState, beta: jax.Array) -> ExpTestState:
    """Cuts the rate and starts a fresh window and correction."""
    lr = state.learning_rate * beta
    w = window_size(state.initial_loss, lr)
    return state._replace(
        learning_rate=lr,
        num_cuts=optax.safe_increment(state.num_cuts),
        base_window=w,
        window_length=_test_length(w),
        correcting=jnp.asarray(sgd_correction),
        grad_norm_sum=jnp.zeros_like(state.grad_norm_sum),
        window=loss_window.clear(state.window),
    )

  def diverged_at(state: ExpTestState, value: jax.Array, squares: jax.Array):
    """A non-finite loss or update, or a loss above the divergence bound."""
    diverged = ~(jnp.isfinite(value) & jnp.isfinite(squares))
    if divergence_factor is not None:
      # L0 is 0 until the first loss has been seen.
      diverged |= (state.initial_loss > 0) & (
          value > divergence_factor * state.initial_loss
      )
    return diverged

  def on_event(state, grad_sum, value, squares, alpha, beta):
    """The rare branch: first loss, correction, test, merge, divergence."""
    # Recomputed here rather than passed in: a flag read by both the
    # predicate and the branch would cost the per-step path one more kernel.
    diverged = diverged_at(state, value, squares)
    dtype = state.learning_rate.dtype
    first = state.step == 0
    l0 = jnp.where(first, jnp.where(jnp.isfinite(value), value, 0), state.initial_loss)
    w = jnp.where(first, window_size(l0, state.learning_rate), state.base_window)
    n = jnp.where(first, _test_length(w), state.window_length)

    count = state.window.count
    end_correction = state.correcting & (count >= w)
    if sgd_correction:
      # c_w >= 1 by the triangle inequality. Zero displacement with a nonzero
      # path (gradients that cancel exactly) means an unbounded correction;
      # all-zero gradients mean no information (c_w = 1).
      path = state.grad_norm_sum
      displacement = jnp.sqrt(_sum_of_squares(grad_sum, dtype))
      c_w = jnp.where(
          displacement > 0,
          path / jnp.where(displacement > 0, displacement, 1),
          jnp.where(path > 0, jnp.inf, 1),
      )
      c_w = jnp.maximum(c_w, 1.0)
      corrected = _test_length(jnp.minimum(jnp.round(c_w * w), MAX_WINDOW))
      n = jnp.where(end_correction, corrected, n)
    state = state._replace(
        initial_loss=l0, base_window=w, window_length=n,
        correcting=state.correcting & ~end_correction,
    )

    complete = (count >= n) & ~diverged
    p = lazy_cond(
        complete,
        lambda window, phase, last_p: _test_window(window, phase),
        lambda window, phase, last_p: last_p,
        state.window, state.phase, state.p_value,
    )
    passed = p < alpha
    searching = state.phase == Phase.SEARCHING
    failed = diverged | (complete & ~passed)
    decision = jnp.select(
        [diverged, complete & searching, complete],
        [
            Decision.DIVERGED,
            jnp.where(passed, Decision.EXPONENTIAL, Decision.RESTART),
            jnp.where(passed, Decision.DECREASING, Decision.PLATEAU),
        ],
        Decision.NONE,
    ).astype(jnp.int32)
    resets = reset & failed & (searching | diverged)

    cut = new_rate(state, beta)
    passed_state = state._replace(window=loss_window.clear(state.window))
    merged = state._replace(window=loss_window.merge(state.window))
    keep = jax.tree.map(
        lambda a, b: jnp.where(loss_window.is_full(state.window), a, b),
        merged, state,
    )
    state = jax.tree.map(
        lambda a, b, c: jnp.where(failed, a, jnp.where(complete, b, c)),
        cut, passed_state, keep,
    )
    phase = jnp.where(
        complete & passed & searching, Phase.TUNING,
        jnp.where(resets, Phase.SEARCHING, state.phase),
    ).astype(jnp.int32)
    state = state._replace(
        phase=phase,
        p_value=p.astype(dtype),
        decision=decision,
        num_resets=jnp.where(
            resets, optax.safe_increment(state.num_resets), state.num_resets
        ),
    )
    return state._replace(next_event=_next_event(state))

  def measuring(state: ExpTestState) -> jax.Array:
    """Whether this step's gradient counts towards the correction c_w."""
    return state.correcting & (state.window.count <= state.base_window)

  def event(state: ExpTestState, value: jax.Array, squares: jax.Array):
    """Whether `on_event` must run at this step."""
    return (state.window.count >= state.next_event) | diverged_at(
        state, value, squares
    )

  def measure_then_decide(carry, grads, grad_sq, value, squares, alpha, beta):
    """The rare branch with the correction: accumulate, then `on_event`.

    Under `jax.vmap` this runs for all arms whenever one measures (cheap and
    elementwise), while `on_event` keeps running only for the arms that need
    it, one at a time.
    """
    state, grad_sum = carry
    now = measuring(state)
    # A rate change zeroes S: the first step after it replaces the sums
    # (while S is 0 the gradients so far were all 0, and so is R).
    restart = state.grad_norm_sum == 0
    grad_sum = jax.tree.map(
        lambda r, g: jnp.where(
            now, jnp.where(restart, g, r + g), r
        ).astype(r.dtype),
        grad_sum, grads,
    )
    state = state._replace(grad_norm_sum=jnp.where(
        now, state.grad_norm_sum + jnp.sqrt(grad_sq), state.grad_norm_sum
    ))
    state = lazy_update(
        event(state, value, squares), on_event, state,
        grad_sum, value, squares, alpha, beta,
    )
    return state, grad_sum

  def update_fn(
      updates: optax.Updates,
      state: ExpTestState,
      params: Optional[optax.Params] = None,
      *,
      value: Optional[jax.typing.ArrayLike] = None,
      **extra_args: Any,
  ) -> tuple[optax.Updates, ExpTestState]:
    if value is None:
      raise TypeError(
          "exptest's update needs the training loss at `params`: call"
          " tx.update(grads, state, params, value=loss)."
      )
    if jnp.ndim(value) != 0:
      raise ValueError(
          "exptest: value must be the scalar loss at `params`, got shape"
          f" {jnp.shape(value)}."
      )
    if reset and params is None:
      raise ValueError(
          "exptest(reset=True) needs the parameters to reset them: call"
          " tx.update(grads, state, params, value=loss), or pass reset=False."
      )
    dtype = state.learning_rate.dtype
    value = jnp.asarray(value).astype(dtype)
    grads = updates

    # The loss and the gradients as received are what the paper measures.
    grad_sq = _sum_of_squares(grads, dtype)
    squares = grad_sq  # Non-finite iff some gradient or inner update is.
    inner_state = state.inner_state
    if inner is not None:
      updates, inner_state = inner.update(
          grads, inner_state, params, value=value, **extra_args
      )
      squares += _sum_of_squares(updates, dtype)

    window = loss_window.push(state.window, value)
    # Only the scalars and the window go through the rare branches, which
    # update them in place; `decision` stays NONE unless a branch decides.
    small = state._replace(
        window=window, decision=jnp.zeros((), jnp.int32),
        grad_sum=(), initial_params=(), inner_state=(),
    )
    alpha_, beta_ = jnp.asarray(alpha, dtype), jnp.asarray(beta, dtype)
    grad_sum = state.grad_sum
    if sgd_correction:
      # One branch for both rare cases (measuring, event), so that a common
      # step checks a single predicate.
      small, grad_sum = lazy_update(
          measuring(small) | event(small, value, squares),
          measure_then_decide, (small, grad_sum),
          grads, grad_sq, value, squares, alpha_, beta_,
          batched="select",
      )
    else:
      small = lazy_update(
          event(small, value, squares), on_event, small,
          grad_sum, value, squares, alpha_, beta_,
      )

    # What the update must do follows from the decision.
    diverged = small.decision == Decision.DIVERGED
    reset_params = reset & (diverged | (small.decision == Decision.RESTART))
    skip_update = diverged & ~reset_params

    lr = small.learning_rate
    if reset:
      updates = jax.tree.map(
          lambda u, p, p0: jnp.where(
              reset_params,
              p0 - p,
              jnp.where(skip_update, 0, -lr * u),
          ).astype(u.dtype),
          updates, params, state.initial_params,
      )
    else:
      updates = jax.tree.map(
          lambda u: jnp.where(skip_update, 0, -lr * u).astype(u.dtype),
          updates,
      )
    if inner is not None:
      # A skipped step keeps the inner state it started from (non-finite
      # gradients must not linger in a momentum); a reset starts it afresh.
      inner_state = jax.tree.map(
          lambda new, old: jnp.where(skip_update, old, new),
          inner_state, state.inner_state,
      )
      if reset:
        inner_state = jax.tree.map(
            lambda fresh, s: jnp.where(reset_params, fresh, s),
            inner.init(state.initial_params), inner_state,
        )
    new_state = small._replace(
        step=optax.safe_increment(small.step),  # After the branch: no copy.
        grad_sum=grad_sum,
        initial_params=state.initial_params,
        inner_state=inner_state,
    )
    return updates, new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
