"""The mini-batch window correction `c_w` of ExpTest.

Mini-batch gradients zig-zag, so the loss decays more slowly per step than
full-batch theory says, and the paper lengthens the window by

  c_w = S / ||R||,   S = sum_t ||g_t||,   R = sum_t g_t,

over the first `W` steps after each rate change: the length of the path the
gradients walk over the length of their net displacement (`c_w >= 1` by the
triangle inequality, 1 for a straight path).

This module keeps the two sums. The window decides when they are measured
(`window.WindowState.measuring`) and when measuring ends.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_exptest._src.lazy_cond import lazy_cond


class CorrectionState(NamedTuple):
  """The sums behind `c_w`.

  Attributes:
    path_length: `S`, the sum of the gradients' norms (float scalar).
    displacement: `R`, the sum of the gradients (a tree like them).
  """

  path_length: jax.Array
  displacement: optax.Updates


def init(params: optax.Params, dtype: jnp.dtype) -> CorrectionState:
  """Zero sums for gradients shaped like `params`."""
  return CorrectionState(
      path_length=jnp.zeros((), dtype),
      displacement=optax.tree.zeros_like(params),
  )


def sum_of_squares(tree: Any, dtype: jnp.dtype) -> jax.Array:
  """The sum of the squares of every entry of `tree`, accumulated in `dtype`
  (may overflow to inf for finite entries: `norm` handles that)."""
  # `astype`: an empty tree's sum is optax's integer 0.
  return optax.tree.norm(optax.tree.cast(tree, dtype), squared=True).astype(dtype)


def _rescaled_norm(tree: Any, dtype: jnp.dtype) -> jax.Array:
  """`||tree||` without overflow: the entries are divided by the largest."""
  tree = optax.tree.cast(tree, dtype)
  largest = optax.tree.norm(tree, ord="inf")
  scale = jnp.where(largest > 0, largest, 1)
  return largest * optax.tree.norm(jax.tree.map(lambda x: x / scale, tree))


def norm(tree: Any, dtype: jnp.dtype) -> jax.Array:
  """`||tree||` (flattened), finite for any finite entries.

  The sum of squares overflows in float32 for entries near 1e19; only then
  is the norm recomputed from entries divided by the largest one.

  Args:
    tree: a tree of arrays.
    dtype: the dtype to accumulate in.

  Returns:
    A scalar of `dtype`.
  """
  if not jax.tree.leaves(tree):
    return jnp.zeros((), dtype)
  squares = sum_of_squares(tree, dtype)
  # The rare case is the true branch: under `vmap`, `lazy_cond` then runs
  # the common one vmapped, with no loop over the arms.
  return lazy_cond(
      jnp.isinf(squares),
      lambda _, t: _rescaled_norm(t, dtype),
      lambda s, _: jnp.sqrt(s),
      squares, tree,
  )


def accumulate(
    correction: CorrectionState, grads: optax.Updates, first: jax.Array
) -> CorrectionState:
  """Adds one gradient to the sums; `first` starts them afresh.

  Args:
    correction: the sums so far.
    grads: this step's gradient.
    first: whether this is the first step of a measurement (the sums of an
      earlier one are discarded).

  Returns:
    The new sums.
  """
  dtype = correction.path_length.dtype
  length = norm(grads, dtype)
  displacement = jax.tree.map(
      lambda r, g: jnp.where(first, g, r + g).astype(r.dtype),
      correction.displacement, grads,
  )
  return CorrectionState(
      path_length=jnp.where(first, length, correction.path_length + length),
      displacement=displacement,
  )


def factor(correction: CorrectionState) -> jax.Array:
  """`c_w = S / ||R||`, at least 1.

  Zero displacement with a nonzero path (gradients that cancel exactly) is an
  unbounded correction (`inf`); all-zero gradients carry no information
  (`c_w = 1`).

  Args:
    correction: the sums over the measured steps.

  Returns:
    A float scalar in `[1, inf]`.
  """
  path = correction.path_length
  displacement = norm(correction.displacement, path.dtype)
  c_w = jnp.where(
      displacement > 0,
      path / jnp.where(displacement > 0, displacement, 1),
      jnp.where(path > 0, jnp.inf, 1),
  )
  return jnp.maximum(c_w, 1.0)
