"""The run's scales, fixed at its first finite loss.

What a loss, a gradient and a rate are measured against: the loss scale
`L0` (the paper's windows and the divergence rule), the gradient's norm and
live entries at that loss (the divergence and collapse rules), and `rho`,
the factor from the rate to the gradient-descent rate with the same loss
decrease per step (`inner_rules`).

The loss scale. The paper's `W` assumes a loss that decays to 0 from its
first value `L0`. Here `L0` is measured from `loss_floor` (0 by default, the
paper's case), with two guards:

* `L0` comes from the first *finite* loss, so that one bad first batch does
  not fix the scale at 0 (a non-finite loss is a fault and the scale stays
  unknown);
* a first loss at or below `loss_floor` (a negative log-likelihood, a loss
  with an offset, a start at the optimum) has no gap to decay through. Its
  scale is its distance to the floor, and at least the scale whose first
  window is the fits' minimum of 4 losses at the rate the scale is fixed at
  (`window.scale_of_window`). Windows then grow as `1 / eta` with every
  cut, as the paper's `W` does, and the number of cuts grows with the
  logarithm of the steps; without it, a scale of 0 gives windows of 4 losses
  at every rate and a cut every 4 steps down to a rate of 0. Pass a known
  lower bound as `loss_floor=` to measure the true gap instead.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from optax_exptest._src import window as window_lib


class Scales(NamedTuple):
  """The run's scales (float scalars; 0 until the first finite loss, but
  `rho`).

  Attributes:
    loss: `L0`, the scale of the loss above `loss_floor`.
    grad_norm_sq: `||g_0||^2`, the squared gradient norm at the first finite
      loss: the gradients' scale, as `L0` is the loss's.
    live: the gradient's live entries at the first finite loss
      (`collapse.live_entries`), against which a collapse is told.
    rho: the rate's factor to the gradient-descent rate (`inner_rules`; 1
      without an inner): the inner's DC gain from the start, or measured at
      the first finite loss for a normalizing inner.

  Examples:
    >>> import jax.numpy as jnp, optax, optax_exptest
    >>> tx = optax_exptest.exptest(0.1, inner=optax.trace(0.9))
    >>> state = tx.init(jnp.zeros(2))
    >>> _, state = tx.update(jnp.ones(2), state, jnp.zeros(2), value=2.0)
    >>> float(state.scales.loss), round(float(state.scales.rho), 3)
    (2.0, 10.0)
  """

  loss: jax.Array
  grad_norm_sq: jax.Array
  live: jax.Array
  rho: jax.Array


def init(dtype: jnp.dtype, rho: float) -> Scales:
  """Unknown scales; `rho` as the inner rule knows it before any loss."""
  zero = jnp.zeros((), dtype)
  return Scales(loss=zero, grad_norm_sq=zero, live=zero, rho=jnp.asarray(rho, dtype))


def known(scales: Scales) -> jax.Array:
  """Whether the first finite loss has fixed the scales."""
  return scales.loss > 0


def loss_scale(
    first_loss: jax.Array, loss_floor: jax.Array, learning_rate: jax.Array
) -> jax.Array:
  """`L0`: the gap `first_loss - loss_floor` (see the module's text)."""
  gap = first_loss - loss_floor
  minimum = window_lib.scale_of_window(window_lib.MIN_WINDOW, learning_rate)
  return jnp.where(gap > 0, gap, jnp.maximum(-gap, minimum)).astype(
      first_loss.dtype
  )


def fix(
    scales: Scales,
    value: jax.Array,
    loss_floor: jax.Array,
    effective_rate: jax.Array,
    grad_norm_sq: jax.Array,
    live: jax.Array,
    rho: jax.Array,
) -> Scales:
  """The scales after this loss: fixed now if it is the first finite one.

  Args:
    scales: the scales so far.
    value: this step's loss.
    loss_floor: the loss's lower bound.
    effective_rate: the gradient-descent rate (`rho * eta`, with this
      step's `rho`) at which the minimum loss scale is computed.
    grad_norm_sq: this step's `||g||^2`.
    live: this step's live gradient entries.
    rho: `rho` measured at this step (the one known before, if none is).

  Returns:
    The new `Scales`.
  """
  new = jnp.isfinite(value) & ~known(scales)
  fixed = Scales(
      loss=loss_scale(value, loss_floor, effective_rate),
      grad_norm_sq=grad_norm_sq,
      live=live,
      rho=rho,
  )
  return jax.tree.map(
      lambda a, b: jnp.where(new, a, b).astype(b.dtype), fixed, scales
  )
