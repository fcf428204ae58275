"""The window ExpTest tests: its losses, its length and when it needs attention.

Data only: the policy (`policy.py`) says how long each window is and what
test it gets; the state machine (`exptest.py`) records the losses and asks
the policy at the window's events. The losses go into a block-averaging
buffer of fixed capacity (`block_sums.py`), so a window of any length costs
the same memory.

The paper's base window, `W = round(2 sqrt(2) L0 / (e eta))` at the
gradient-descent rate `eta` and loss scale `L0`, is written once here
(`window_size`), with its inverse (`scale_of_window`).
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from optax_exptest._src import block_sums
from optax_exptest._src import fits

# Windows are counted in int32; this cap keeps `round(c_w * W)` representable.
MAX_WINDOW = 2**30
# The shortest window: the fits' minimum number of losses.
MIN_WINDOW = fits.MIN_OBSERVATIONS
# The paper's `W = 2 sqrt(2) L0 / (e eta)`: its numerator's and denominator's
# constants, kept apart so that `W` rounds as the paper's formula does.
_TWO_SQRT_TWO = 2.0 * math.sqrt(2.0)


class WindowState(NamedTuple):
  """The current window.

  Attributes:
    losses: the block-averaged losses recorded so far (`block_sums`).
    base_length: the steps over which the mini-batch correction `c_w` is
      measured at the window's start (the paper's `W`; 0 for none; int32).
    length: the number of losses at which the window ends and is tested
      (`N`, int32).
    measuring: whether the correction `c_w` is being measured.
    next_event: the loss count at which the window needs attention next
      (the first loss, its end, a full buffer), so that the per-step path
      compares one integer.
  """

  losses: block_sums.BlockSums
  base_length: jax.Array
  length: jax.Array
  measuring: jax.Array
  next_event: jax.Array


def window_size(loss_scale: jax.Array, learning_rate: jax.Array) -> jax.Array:
  """The paper's base window `W = round(2 sqrt(2) L0 / (e eta))`.

  Rounds half to even, clips to `[1, MAX_WINDOW]`; a non-finite ratio (a zero
  rate) gives `MAX_WINDOW`.

  Args:
    loss_scale: L0, the scale of the loss.
    learning_rate: the current (gradient-descent) rate eta.

  Returns:
    An int32 scalar.

  Examples:
    >>> from optax_exptest._src.window import window_size
    >>> int(window_size(1.0, 0.2))
    5
  """
  w = _TWO_SQRT_TWO * loss_scale / (math.e * learning_rate)
  w = jnp.where(jnp.isfinite(w), w, MAX_WINDOW)
  return jnp.clip(jnp.round(w), 1, MAX_WINDOW).astype(jnp.int32)


def scale_of_window(length: int, learning_rate: jax.Array) -> jax.Array:
  """The loss scale whose window at `learning_rate` is `length` steps: the
  inverse of `window_size` (before rounding)."""
  return length * math.e * learning_rate / _TWO_SQRT_TWO


def test_length(n: jax.Array) -> jax.Array:
  """A window length the tests can judge: `n` clipped to
  `[MIN_WINDOW, MAX_WINDOW]`."""
  return jnp.clip(n, MIN_WINDOW, MAX_WINDOW).astype(jnp.int32)


def init(capacity: int, dtype: jnp.dtype, measuring: bool) -> WindowState:
  """An empty window of unknown length, whose first loss is an event (the
  loss that fixes the run's scales)."""
  return WindowState(
      losses=block_sums.empty(capacity, dtype),
      base_length=jnp.asarray(MAX_WINDOW, jnp.int32),
      length=jnp.asarray(MAX_WINDOW, jnp.int32),
      measuring=jnp.asarray(measuring),
      next_event=jnp.ones((), jnp.int32),
  )


def record(
    window: WindowState, value: jax.Array, skipped: jax.Array
) -> WindowState:
  """Adds this step's loss, unless the step is skipped (the per-step path)."""
  return window._replace(
      losses=block_sums.push(window.losses, value, include=~skipped)
  )


def schedule(window: WindowState, scale_known: jax.Array) -> WindowState:
  """Sets `next_event`: the window's end or a full buffer, whichever comes
  first; the next loss while the run's scale is still unknown."""
  capacity = window.losses.sums.shape[0]
  end = jnp.minimum(
      window.length,
      jnp.minimum(capacity * window.losses.block_size, MAX_WINDOW),
  )
  return window._replace(
      next_event=jnp.where(scale_known, end, 1).astype(jnp.int32)
  )


def with_lengths(
    window: WindowState, base_length: jax.Array, length: jax.Array
) -> WindowState:
  """The same losses, tested at `length`; `base_length` steps of correction."""
  return window._replace(
      base_length=base_length.astype(jnp.int32), length=length.astype(jnp.int32)
  )


def fresh(
    window: WindowState, length: jax.Array, measure_steps: jax.Array
) -> WindowState:
  """An empty window tested at `length` losses that measures the correction
  over its first `measure_steps` (none when 0); `end_measurement` then sets
  its length."""
  return window._replace(
      losses=block_sums.clear(window.losses),
      base_length=measure_steps.astype(jnp.int32),
      length=length.astype(jnp.int32),
      measuring=measure_steps > 0,
  )


def end_measurement(window: WindowState, c_w: jax.Array) -> WindowState:
  """The correction is measured: `N = max(4, round(c_w W))`."""
  n = jnp.minimum(jnp.round(c_w * window.base_length), MAX_WINDOW)
  return window._replace(
      length=test_length(n), measuring=jnp.zeros_like(window.measuring)
  )


def at_event(window: WindowState) -> jax.Array:
  """Whether the window needs attention at this loss (`next_event`)."""
  return window.losses.count >= window.next_event


def is_measured(window: WindowState) -> jax.Array:
  """Whether the correction's `W` steps are all in."""
  return window.losses.count >= window.base_length


def is_complete(window: WindowState) -> jax.Array:
  """Whether the window holds its `N` losses."""
  return window.losses.count >= window.length


def points(window: WindowState) -> tuple[jax.Array, jax.Array, jax.Array]:
  """`(t, y, weights)` of the window's losses for a weighted fit or test
  (`block_sums.points`; `stats.weighted_exponential_test`)."""
  return block_sums.points(window.losses)


def make_room(window: WindowState) -> WindowState:
  """Merges the buffer's slots pairwise when it is full."""
  merged = block_sums.merge(window.losses)
  full = block_sums.is_full(window.losses)
  losses = jax.tree.map(
      lambda a, b: jnp.where(full, a, b), merged, window.losses
  )
  return window._replace(losses=losses)
