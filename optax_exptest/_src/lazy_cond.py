"""A `lax.cond` that stays a branch under `jax.vmap`.

Under `jax.vmap`, `lax.cond` with a batched predicate becomes a `select` that
runs both branches for every element on every call. ExpTest's rare branch (a
nonlinear least-squares fit at the end of a window) then runs on every
training step of every arm. `lazy_cond` keeps the branch: its batching rule
runs the expensive branch only when at least one element of the batch takes
it, and then runs it for those elements only, one after another, so the
cheap path costs one `jnp.any` more than the unbatched one and a rare event of
one arm costs one `true_fun`, not one per arm.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax


def _select(pred: jax.Array, on_true: jax.Array, on_false: jax.Array) -> jax.Array:
  """Selects along the leading (batch) axis of `on_true` / `on_false`."""
  pred = jnp.reshape(pred, pred.shape + (1,) * (on_true.ndim - pred.ndim))
  return jnp.where(pred, on_true, on_false)


def lazy_cond(
    pred: jax.typing.ArrayLike,
    true_fun: Callable[..., Any],
    false_fun: Callable[..., Any],
    *operands: Any,
) -> Any:
  """Like `jax.lax.cond`, but batched with one shared predicate.

  Unbatched, this is exactly `lax.cond(pred, true_fun, false_fun, *operands)`.
  Under `jax.vmap` with a batched `pred`, it becomes
  `lax.cond(jnp.any(pred), lax.map(lax.cond(pred_i, true_fun, false_fun)),
  vmap(false_fun))`: on calls where no element needs `true_fun`, the batched
  `false_fun` runs; otherwise a loop over the elements runs each one's branch,
  so `true_fun` runs only for the elements that take it. Nested `vmap`s apply the rule at
  every level. The branches must not close over traced values: pass them as
  operands.

  Args:
    pred: a scalar boolean.
    true_fun: the rarely taken, expensive branch.
    false_fun: the common, cheap branch.
    *operands: pytrees of arrays passed to the branch taken.

  Returns:
    The output of the branch taken (per element under `vmap`).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> f = lambda x: lazy_cond(x > 2, lambda y: y * 10, lambda y: y, x)
    >>> jax.vmap(f)(jnp.arange(5))
    Array([ 0,  1,  2, 30, 40], dtype=int32)
  """

  @jax.custom_batching.custom_vmap
  def cond(pred, operands):
    return lax.cond(pred, true_fun, false_fun, *operands)

  @cond.def_vmap
  def cond_batched(axis_size, in_batched, pred, operands):
    pred_batched, operands_batched = in_batched
    in_axes = jax.tree.map(lambda b: 0 if b else None, operands_batched)
    vfalse = lambda *ops: jax.vmap(
        lambda o: false_fun(*o), in_axes=(in_axes,), axis_size=axis_size
    )(ops)
    if not pred_batched:
      vtrue = lambda *ops: jax.vmap(
          lambda o: true_fun(*o), in_axes=(in_axes,), axis_size=axis_size
      )(ops)
      out = lazy_cond(pred, vtrue, vfalse, *operands)
      return out, jax.tree.map(lambda _: True, out)

    # Elements take the branch one at a time: a vmapped `true_fun` would run
    # for every element whenever one needs it.
    def one_at_a_time(pred, *ops):
      batched = jax.tree.map(lambda x, b: x if b else None, ops, operands_batched)
      def element(xs):
        p, elt = xs
        full = jax.tree.map(
            lambda e, o, b: e if b else o, elt, ops, operands_batched,
            is_leaf=lambda x: x is None,
        )
        return lazy_cond(p, true_fun, false_fun, *full)
      return lax.map(element, (pred, batched))

    def none_true(pred, *ops):
      del pred
      return vfalse(*ops)

    # `pred` travels as an operand: the nested branches must not close over
    # values that an outer `vmap` may be tracing.
    out = lazy_cond(jnp.any(pred), one_at_a_time, none_true, pred, *operands)
    return out, jax.tree.map(lambda _: True, out)

  return cond(pred, operands)
