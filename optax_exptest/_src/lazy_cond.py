"""Rare branches that stay rare under `jax.vmap`, and cost nothing when not taken.

Under `jax.vmap`, `lax.cond` with a batched predicate becomes a `select` that
runs both branches for every element on every call. ExpTest's rare branch (a
nonlinear least-squares fit at the end of a window) would then run on every
training step of every arm. Both helpers here keep the branch: their batching
rules run the expensive function only when at least one element of the batch
needs it, and then for those elements only, one after another, so the common
path costs one `jnp.any` more than the unbatched one and a rare event of one
arm costs one call, not one per arm.

* `lazy_cond(pred, true_fun, false_fun, *operands)`: a `lax.cond`.
* `lazy_update(pred, fun, carry, *operands)`: `fun(carry, ...)` or `carry`,
  as a while loop that runs at most once. Unlike a `lax.cond`, whose outputs
  are copied from the branch not taken, the loop updates `carry` in place, so
  a per-step call with a false predicate costs a single predicate check.
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
    >>> from optax_exptest._src.lazy_cond import lazy_cond
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


def lazy_update(
    pred: jax.typing.ArrayLike,
    fun: Callable[..., Any],
    carry: Any,
    *operands: Any,
    batched: str = "one_at_a_time",
) -> Any:
  """`fun(carry, *operands)` if `pred`, else `carry`, without copying `carry`.

  Unbatched, a `lax.while_loop` that runs `fun` at most once: its carry is
  updated in place, so the common case (`pred` false) costs one predicate
  check, where a `lax.cond` copies every output of the branch not taken.
  `fun` must return a pytree with the structure, shapes and dtypes of `carry`.

  Under `jax.vmap` with a batched `pred`, nothing runs when no element needs
  `fun`. Otherwise, with `batched="one_at_a_time"`, `fun` runs for the
  elements that need it, one after another (for an expensive `fun`, such as
  a fit); with `batched="select"`, `fun` runs vmapped over all elements and
  the elements that do not need it keep their carry (for a cheap,
  elementwise `fun`, where a loop over elements would cost more).

  Args:
    pred: a scalar boolean.
    fun: `fun(carry, *operands) -> new carry`.
    carry: a pytree of arrays.
    *operands: pytrees of arrays that `fun` reads.
    batched: how a batched `pred` runs `fun`: "one_at_a_time" or "select".

  Returns:
    The new carry (per element under `vmap`).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from optax_exptest._src.lazy_cond import lazy_update
    >>> f = lambda x: lazy_update(x > 2, lambda c, k: c * k, x, 10)
    >>> jax.vmap(f)(jnp.arange(5))
    Array([ 0,  1,  2, 30, 40], dtype=int32)
  """
  if batched not in ("one_at_a_time", "select"):
    raise ValueError(
        f"lazy_update: batched must be 'one_at_a_time' or 'select', got {batched!r}."
    )

  @jax.custom_batching.custom_vmap
  def update(pred, carry, operands):
    def body(state):
      _, carry = state
      return jnp.zeros_like(pred), fun(carry, *operands)

    return lax.while_loop(lambda state: state[0], body, (pred, carry))[1]

  @update.def_vmap
  def update_batched(axis_size, in_batched, pred, carry, operands):
    pred_batched, carry_batched, operands_batched = in_batched
    carry = jax.tree.map(
        lambda x, b: x if b else jnp.broadcast_to(x, (axis_size,) + jnp.shape(x)),
        carry, carry_batched,
    )
    axes = jax.tree.map(lambda b: 0 if b else None, operands_batched)
    vfun = lambda carry, *ops: jax.vmap(
        fun, in_axes=(0, *axes), axis_size=axis_size
    )(carry, *ops)
    if not pred_batched:
      out = lazy_update(pred, vfun, carry, *operands, batched=batched)
    elif batched == "select":
      def select(carry, pred, *ops):
        new = vfun(carry, *ops)
        return jax.tree.map(lambda a, b: _select(pred, a, b), new, carry)
      out = lazy_update(jnp.any(pred), select, carry, pred, *operands)
    else:
      def one_at_a_time(carry, pred, *ops):
        def element(xs):
          p, c, elt = xs
          full = jax.tree.map(
              lambda e, o, b: e if b else o, elt, ops, operands_batched,
              is_leaf=lambda x: x is None,
          )
          return lazy_update(p, fun, c, *full)
        per_element = jax.tree.map(
            lambda x, b: x if b else None, ops, operands_batched
        )
        return lax.map(element, (pred, carry, per_element))
      out = lazy_update(jnp.any(pred), one_at_a_time, carry, pred, *operands)
    return out, jax.tree.map(lambda _: True, out)

  return update(pred, carry, operands)
