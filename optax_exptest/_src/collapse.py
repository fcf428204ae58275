"""A cheap check that a model has collapsed to a trivial predictor.

A step that is too large can kill every unit of a ReLU network: the
pre-activations all turn negative, the hidden layers output zeros, and the
model predicts a constant whatever its input. Its gradient then vanishes
identically on every weight that acts through the dead units; only the
output layer's bias still learns, and the loss decays exponentially to the
loss of the best constant (the label variance for squared error). That
decay passes ExpTest's search test, so without a check the run would tune a
model that can no longer learn (`docs/design.md`, section 3.6).

The check compares the number of *live* gradient entries (those not
negligible next to the largest, `|g_i| > eps * max_j |g_j|` in the state's
float precision) with their number at the first finite loss. A healthy
model's count changes with the batch by small factors (sparse inputs, ReLU
sparsity, embedding rows of the tokens present); a collapse leaves the
output bias alone, a fraction of the parameters that is the inverse of the
model's size (1 in 1409 for the California MLP). The model counts as
collapsed when fewer than `COLLAPSE_FRACTION` of the first live entries are
live, two orders of magnitude from either regime, while the loss is still
above its floor by more than the square root of the float precision times
`L0` (a run that has converged exactly, a gradient of float noise, is not a
collapse). ExpTest acts on it when two window ends in a row see it: a dead
model stays dead, while one batch that reaches few parameters (a short
document with sparse inputs and a tiny batch) does not repeat.

It runs only at the steps that may decide (the first loss, the end of each
window), never on the per-step path.
"""

from typing import Any

import jax
import jax.numpy as jnp
import optax

# Fewer than this fraction of the first step's live gradient entries.
COLLAPSE_FRACTION = 0.01


def live_entries(tree: Any, dtype: jnp.dtype) -> jax.Array:
  """The number of entries of `tree` above `eps * max |entry|`.

  `eps` is the machine epsilon of `dtype`: an entry below it relative to the
  largest is numerically zero next to it (a momentum decaying on a dead
  weight, an exact zero). An all-zero or non-finite tree has 0 live entries.

  Args:
    tree: a pytree of arrays (a gradient).
    dtype: the float dtype of the count and of the comparison.

  Returns:
    A scalar of `dtype` (a float: the count of a large model overflows
    int32).

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_exptest._src import collapse
    >>> float(collapse.live_entries([jnp.array([1.0, 0.0, 1e-9]), jnp.ones(2)],
    ...                             jnp.float32))
    3.0
  """
  magnitudes = jax.tree.map(jnp.abs, optax.tree.cast(tree, dtype))
  if not jax.tree.leaves(magnitudes):
    return jnp.zeros((), dtype)
  threshold = jnp.finfo(dtype).eps * optax.tree.max(magnitudes)
  # Counted per leaf as integers, then summed in `dtype`: a float count of
  # ones stops being exact past 2**24 entries in float32.
  return optax.tree.sum(jax.tree.map(
      lambda x: jnp.sum(x > threshold).astype(dtype), magnitudes))


def has_collapsed(
    live: jax.Array,
    live_at_start: jax.Array,
    loss_gap: jax.Array,
    loss_scale: jax.Array,
) -> jax.Array:
  """Whether the live gradient entries fell below `COLLAPSE_FRACTION` of the start's.

  Args:
    live: live entries of this step's gradient (`live_entries`).
    live_at_start: live entries at the first finite loss (0 if unknown).
    loss_gap: this step's loss minus the loss floor.
    loss_scale: `L0`.

  Returns:
    A boolean scalar: some entries are still live, fewer than the fraction
    of the start's, and the loss is above its floor by more than
    `sqrt(eps) * L0`.
  """
  dtype = loss_scale.dtype
  unconverged = loss_gap > jnp.sqrt(jnp.finfo(dtype).eps) * loss_scale
  return (live > 0) & (live < COLLAPSE_FRACTION * live_at_start) & unconverged
