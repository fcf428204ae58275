"""The window ExpTest tests: its length, its losses and when it ends.

With `L0` the loss scale (below) and `eta` the current rate, the paper's base
window is `W = round(2 sqrt(2) L0 / (e eta))` and the tested window holds
`N = max(4, round(c_w W))` losses, `c_w` the mini-batch correction measured
over the first `W` steps after each rate change (`correction.py`; `c_w = 1`
without it). The losses go into a block-averaging buffer of fixed capacity
(`block_sums.py`).

The loss scale. The paper's `W` assumes a loss that decays to 0 from its
first value `L0`. Here `L0` is measured from `loss_floor` (0 by default, the
paper's case), with two guards:

* `L0` comes from the first *finite* loss, so that one bad first batch does
  not fix the scale at 0 (a non-finite loss is a divergence: the rate is cut
  and the scale is still unknown);
* a first loss at or below `loss_floor` (a negative log-likelihood, a loss
  with an offset, a start at the optimum) has no gap to decay through. Its
  scale is its distance to the floor, and at least
  `L_min = 4 e eta_0 / (2 sqrt(2))`, `eta_0` the rate when the scale is
  fixed: the scale whose first window is the fits' minimum of 4 losses.
  Windows then grow as `1 / eta` with every cut, as the paper's `W` does, and
  the number of cuts grows with the logarithm of the steps; without it, a
  scale of 0 gives windows of 4 losses at every rate and a cut every 4 steps
  down to a rate of 0. Pass a known lower bound as `loss_floor=` to measure
  the true gap instead.
"""

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optax_exptest._src import fits
from optax_exptest._src import block_sums

# Windows are counted in int32; this cap keeps `round(c_w * W)` representable.
MAX_WINDOW = 2**30
# The shortest window: the fits' minimum number of losses.
MIN_WINDOW = fits.MIN_OBSERVATIONS


class WindowState(NamedTuple):
  """The current window.

  Attributes:
    losses: the block-averaged losses recorded so far (`block_sums`).
    loss_scale: `L0`, the scale of the loss (0 until a finite loss is seen).
    base_length: `W`, the paper's window at the current rate (int32).
    length: `N`, the number of losses the window is tested at (int32);
      `max(4, W)` while the correction is measured.
    measuring: whether the correction `c_w` is being measured.
    next_event: the loss count at which the window needs attention next
      (the first loss, its end, a full buffer), so that the per-step path
      compares one integer.
    rho: the factor from the rate to the gradient-descent rate
      `W` is computed at (`inner_rules`; 1 without an inner).
    live_at_start: the gradient's live entries at the first finite loss
      (`collapse.live_entries`; 0 until then), against which a collapse to a
      trivial predictor is told.
    collapse_seen: whether the last completed window ended on a model that
      looked collapsed (a collapse is confirmed at the next one).
    grad_norm_sq: `||g_0||^2`, the squared gradient norm at the first finite
      loss (0 until then), the gradients' scale as `L0` is the loss's.
  """

  losses: block_sums.BlockSums
  loss_scale: jax.Array
  base_length: jax.Array
  length: jax.Array
  measuring: jax.Array
  next_event: jax.Array
  rho: jax.Array
  live_at_start: jax.Array
  collapse_seen: jax.Array
  grad_norm_sq: jax.Array


def window_size(loss_scale: jax.Array, learning_rate: jax.Array) -> jax.Array:
  """The paper's base window `W = round(2 sqrt(2) L0 / (e eta))`.

  Rounds half to even, clips to `[1, MAX_WINDOW]`; a non-finite ratio (a zero
  rate) gives `MAX_WINDOW`.

  Args:
    loss_scale: L0, the scale of the loss.
    learning_rate: the current rate eta.

  Returns:
    An int32 scalar.
  """
  w = 2.0 * math.sqrt(2.0) * loss_scale / (math.e * learning_rate)
  w = jnp.where(jnp.isfinite(w), w, MAX_WINDOW)
  return jnp.clip(jnp.round(w), 1, MAX_WINDOW).astype(jnp.int32)


def loss_scale(
    first_loss: jax.Array, loss_floor: jax.Array, learning_rate: jax.Array
) -> jax.Array:
  """`L0`: the gap `first_loss - loss_floor` (see the module's text)."""
  gap = first_loss - loss_floor
  minimum = MIN_WINDOW * math.e * learning_rate / (2.0 * math.sqrt(2.0))
  return jnp.where(gap > 0, gap, jnp.maximum(-gap, minimum)).astype(
      first_loss.dtype
  )


def _test_length(n: jax.Array) -> jax.Array:
  return jnp.clip(n, MIN_WINDOW, MAX_WINDOW).astype(jnp.int32)


def _next_event(window: WindowState) -> jax.Array:
  capacity = window.losses.sums.shape[0]
  end = jnp.minimum(
      window.length,
      jnp.minimum(capacity * window.losses.block_size, MAX_WINDOW),
  )
  return jnp.where(window.loss_scale > 0, end, 1).astype(jnp.int32)


def _with_next_event(window: WindowState) -> WindowState:
  return window._replace(next_event=_next_event(window))


def init(
    capacity: int, dtype: jnp.dtype, measuring: bool, rho: Any = 1.0
) -> WindowState:
  """An empty window whose scale the first finite loss fixes."""
  return WindowState(
      losses=block_sums.empty(capacity, dtype),
      loss_scale=jnp.zeros((), dtype),
      base_length=jnp.asarray(MAX_WINDOW, jnp.int32),
      length=jnp.asarray(MAX_WINDOW, jnp.int32),
      measuring=jnp.asarray(measuring),
      next_event=jnp.ones((), jnp.int32),
      rho=jnp.asarray(rho, dtype),
      live_at_start=jnp.zeros((), dtype),
      collapse_seen=jnp.zeros((), bool),
      grad_norm_sq=jnp.zeros((), dtype),
  )


def record(
    window: WindowState, value: jax.Array, skipped: jax.Array
) -> WindowState:
  """Adds this step's loss, unless the step is skipped (the per-step path)."""
  return window._replace(
      losses=block_sums.push(window.losses, value, include=~skipped)
  )


def restart(
    window: WindowState, learning_rate: jax.Array, measuring: bool
) -> WindowState:
  """A fresh window for a new rate: `W` from the scale, a new correction."""
  w = jnp.where(
      window.loss_scale > 0,
      window_size(window.loss_scale, learning_rate * window.rho),
      MAX_WINDOW,
  ).astype(jnp.int32)
  return _with_next_event(window._replace(
      losses=block_sums.clear(window.losses),
      base_length=w,
      length=_test_length(w),
      measuring=jnp.asarray(measuring),
  ))


def fix_scale(
    window: WindowState,
    value: jax.Array,
    loss_floor: jax.Array,
    learning_rate: jax.Array,
    live: jax.Array,
    grad_norm_sq: jax.Array,
) -> WindowState:
  """At the first finite loss: the scale `L0`, then `W` and `N` from it, the
  gradient's `live` entries and its squared norm."""
  known = window.loss_scale > 0
  new = jnp.isfinite(value) & ~known
  rate = learning_rate * window.rho
  scale = jnp.where(new, loss_scale(value, loss_floor, rate), window.loss_scale)
  w = jnp.where(new, window_size(scale, rate), window.base_length)
  return _with_next_event(window._replace(
      loss_scale=scale,
      base_length=w.astype(jnp.int32),
      length=jnp.where(new, _test_length(w), window.length),
      live_at_start=jnp.where(new, live, window.live_at_start).astype(
          window.live_at_start.dtype
      ),
      grad_norm_sq=jnp.where(new, grad_norm_sq, window.grad_norm_sq).astype(
          window.grad_norm_sq.dtype
      ),
  ))


def end_measurement(window: WindowState, c_w: jax.Array) -> WindowState:
  """The correction is measured: `N = max(4, round(c_w W))`."""
  n = jnp.minimum(jnp.round(c_w * window.base_length), MAX_WINDOW)
  return _with_next_event(window._replace(
      length=_test_length(n), measuring=jnp.zeros_like(window.measuring)
  ))


def at_event(window: WindowState) -> jax.Array:
  """Whether the window needs attention at this loss (`next_event`)."""
  return window.losses.count >= window.next_event


def is_measured(window: WindowState) -> jax.Array:
  """Whether the correction's `W` steps are all in."""
  return window.losses.count >= window.base_length


def is_complete(window: WindowState) -> jax.Array:
  """Whether the window holds its `N` losses."""
  return window.losses.count >= window.length


def after_test(window: WindowState) -> WindowState:
  """The next window after a passed test: same length, no losses yet."""
  return _with_next_event(
      window._replace(losses=block_sums.clear(window.losses))
  )


def make_room(window: WindowState) -> WindowState:
  """Merges the buffer's slots pairwise when it is full."""
  merged = block_sums.merge(window.losses)
  full = block_sums.is_full(window.losses)
  losses = jax.tree.map(
      lambda a, b: jnp.where(full, a, b), merged, window.losses
  )
  return _with_next_event(window._replace(losses=losses))


def exceeds(
    window: WindowState,
    value: jax.Array,
    grad_norm_sq: jax.Array,
    divergence_factor: jax.Array,
    loss_floor: jax.Array,
) -> jax.Array:
  """Whether `value - loss_floor > divergence_factor * L0`, or the gradient's
  norm exceeds `divergence_factor * ||g_0||` (each once its scale is known).

  The gradient's check catches a batch whose loss stays moderate but whose
  step would not: inputs scaled by 1e4 give a model that classifies them
  right a small loss and, on the few it gets wrong, a gradient 1e4 times
  the usual one.
  """
  loss_far_above = (window.loss_scale > 0) & (
      value - loss_floor > divergence_factor * window.loss_scale
  )
  grad_far_above = (window.grad_norm_sq > 0) & (
      grad_norm_sq > jnp.square(divergence_factor) * window.grad_norm_sq
  )
  return loss_far_above | grad_far_above

