"""A fixed-size buffer of block-averaged losses: ExpTest's window memory.

ExpTest's test window grows as 1/learning_rate times the mini-batch correction
and can reach hundreds of thousands of steps. The buffer keeps `capacity`
slots whatever the window length: slot `i` holds the sum of the losses
`[i * block_size, (i + 1) * block_size)` of the window. When all slots are
full, adjacent slots are merged pairwise and `block_size` doubles, so the
slots always cover consecutive, equally long blocks (the last one possibly
partial) and the fit sees evenly spaced points.

Statistics: slot `i` is the mean of `w_i` losses, with `w_i = block_size`
except for the last, partial block. Under i.i.d. noise the block mean has
variance `sigma^2 / w_i`, so weighted least squares with weights `w_i` is the
generalised least-squares fit, and the F- and t-tests keep their exact null
distributions with `m` observations, `m` the number of occupied slots: the
degrees of freedom are `(1, m - 3)` for the exponential F-test and `m - 2` for
the slope t-test. Averaging costs power only through the smaller `m`
(between `capacity / 2` and `capacity` once the window exceeds the capacity).

Pushing a loss costs one `dynamic_update_slice`; merging happens once per
doubling, behind the optimizer's rare-event branch.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp


class BlockSums(NamedTuple):
  """Block sums of the losses of the current window.

  Attributes:
    sums: shape `(capacity,)`, the sum of the losses in each slot.
    count: int32 scalar, the number of losses in the buffer.
    block_size: int32 scalar, the number of losses per (full) slot, a power
      of two.
  """

  sums: jax.Array
  count: jax.Array
  block_size: jax.Array


def empty(capacity: int, dtype: jnp.dtype) -> BlockSums:
  """Returns an empty window with `capacity` slots of `dtype`."""
  return BlockSums(
      sums=jnp.zeros((capacity,), dtype),
      count=jnp.zeros((), jnp.int32),
      block_size=jnp.ones((), jnp.int32),
  )


def clear(buffer: BlockSums) -> BlockSums:
  """Returns an empty window of the same capacity and dtype."""
  return empty(buffer.sums.shape[0], buffer.sums.dtype)


def push(
    buffer: BlockSums, value: jax.Array, include: jax.typing.ArrayLike = True
) -> BlockSums:
  """Adds one loss to the window (the caller merges when `is_full`).

  With `include` False the window is returned as it was, so that a step can
  be skipped without a branch.
  """
  include = jnp.asarray(include, bool)
  # Both are non-negative: truncating division, without floor's corrections.
  slot = jax.lax.div(buffer.count, buffer.block_size)
  value = jnp.where(include, value, 0).astype(buffer.sums.dtype)
  sums = buffer.sums.at[slot].add(value)
  return buffer._replace(
      sums=sums, count=buffer.count + include.astype(buffer.count.dtype)
  )


def is_full(buffer: BlockSums) -> jax.Array:
  """Whether the next `push` needs a `merge` first."""
  return buffer.count >= buffer.sums.shape[0] * buffer.block_size


def merge(buffer: BlockSums) -> BlockSums:
  """Merges adjacent slots pairwise and doubles the block size."""
  capacity = buffer.sums.shape[0]
  padded = jnp.pad(buffer.sums, (0, capacity % 2))
  merged = padded.reshape(-1, 2).sum(axis=1)
  sums = jnp.zeros_like(buffer.sums).at[: merged.shape[0]].set(merged)
  return buffer._replace(sums=sums, block_size=buffer.block_size * 2)


def points(buffer: BlockSums) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Returns `(t, y, weights)` for a weighted fit over the buffer.

  `t` is the centre (in steps from the window's start) of each slot's block,
  `y` the mean loss of the block, and `weights` the number of losses in it
  (0 for unused slots, whose `t` and `y` are finite placeholders).
  """
  capacity = buffer.sums.shape[0]
  dtype = buffer.sums.dtype
  start = jnp.arange(capacity, dtype=jnp.int32) * buffer.block_size
  weights = jnp.clip(buffer.count - start, 0, buffer.block_size).astype(dtype)
  y = buffer.sums / jnp.maximum(weights, 1)
  t = start.astype(dtype) + (jnp.maximum(weights, 1) - 1) / 2
  return t, y, weights
