"""Whether a step's loss, gradient and update are finite, for one reduction.

ExpTest checks every step (`docs/design.md`, section 3.5): a fault (a
non-finite loss, gradient or update) is skipped, not applied. The check runs
at every step, so its form is chosen for speed (section 7).
"""

from typing import Any

import jax
import jax.numpy as jnp
import optax

from optax_exptest._src import correction as correction_lib
from optax_exptest._src.lazy_cond import lazy_cond


def non_finite_flag(
    value: jax.Array, grads: optax.Updates, updates: Any
) -> tuple[jax.Array, jax.Array]:
  """`(flag, ||grads||^2)`: the flag is 0 when `value` and every entry of
  `grads` and `updates` are finite, NaN otherwise.

  The per-step form is a sum of squares, which XLA:CPU reduces faster than
  any other form measured (`docs/design.md`, section 7). It overflows for
  finite entries (float32 gradients of 2e19), so an infinite sum is checked
  again exactly: `x * 0` is 0 for a finite `x` and NaN for inf or NaN, and a
  sum of zeros cannot overflow.
  """
  # Piecewise constant: no derivative flows through (nor through the branch).
  value, trees = jax.lax.stop_gradient((value, (grads, updates)))
  grad_squares = correction_lib.sum_of_squares(trees[0], value.dtype)
  squares = grad_squares + correction_lib.sum_of_squares(trees[1], value.dtype)
  flag = lazy_cond(
      jnp.isinf(squares), _exact_non_finite_flag, _flag_of_squares,
      value, squares, trees,
  )
  return flag, grad_squares


def _flag_of_squares(value: jax.Array, squares: jax.Array, trees: Any) -> jax.Array:
  del trees
  return value * 0 + squares * 0  # squares is finite or NaN here


def _exact_non_finite_flag(
    value: jax.Array, squares: jax.Array, trees: Any
) -> jax.Array:
  del squares
  flag = value * 0
  for x in jax.tree.leaves(trees):
    flag += jnp.sum(x * jnp.zeros((), x.dtype)).astype(flag.dtype)
  return flag
