"""Rewards in `[0, 1]` for a zooming search, from losses or predictions.

Pure JAX functions, for use inside a `train_fn` under `jax.jit` and
`jax.vmap`. Higher is better; a diverged run (non-finite values) gets `0`,
the worst reward, never NaN.
"""

from typing import Literal

import jax
import jax.numpy as jnp


def loss_reward(
    loss: jax.typing.ArrayLike, reference: jax.typing.ArrayLike
) -> jax.Array:
  r"""A loss normalised by a reference loss: `1 - min(loss / reference, 1)`.

  .. math::
    R = 1 - \mathrm{clip}(L / L_{\mathrm{ref}}, 0, 1)

  The reference is typically the loss at initialisation (then `R` is the
  fraction of the initial loss that training removed) or the loss of a
  trivial predictor (`log(num_classes)` for cross-entropy, the target
  variance for MSE). A loss above the reference (training made things worse)
  gives `0`; so do a non-finite loss or reference, and a reference `<= 0`.
  Losses are assumed non-negative; a negative ratio is clipped to reward 1.

  Args:
    loss: the loss to score (a scalar, or any shape elementwise).
    reference: the loss that scores `0`.

  Returns:
    The reward, in `[0, 1]`, in the broadcast shape and float dtype.

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_exptest import loss_reward
    >>> loss_reward(jnp.array([0.5, 3.0, jnp.nan]), 2.0)
    Array([0.75, 0.  , 0.  ], dtype=float32)
  """
  loss = jnp.asarray(loss)
  reference = jnp.asarray(reference)
  dtype = jnp.result_type(loss, reference, float)
  loss, reference = loss.astype(dtype), reference.astype(dtype)
  ratio = loss / jnp.where(reference > 0, reference, 1)
  ok = jnp.isfinite(loss) & jnp.isfinite(reference) & (reference > 0)
  return jnp.where(ok, 1 - jnp.clip(ratio, 0, 1), 0).astype(dtype)


def loss_curve_reward(
    losses: jax.typing.ArrayLike,
    *,
    reduce: Literal["final", "mean"] = "final",
) -> jax.Array:
  """The reward of a training run from its loss curve.

  `loss_reward(L, losses[0])` with `L` the final loss (`reduce="final"`) or
  the mean loss over the curve (`reduce="mean"`, the normalised area under
  the curve, which also rewards getting there fast). Any non-finite loss in
  the curve gives `0` for `"mean"`; for `"final"`, a non-finite final loss.

  Args:
    losses: 1-D, the training losses in order, the first at initialisation
      (e.g. the outputs of a `lax.scan` over training steps).
    reduce: `"final"` or `"mean"`.

  Returns:
    A scalar reward in `[0, 1]`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_exptest import loss_curve_reward
    >>> losses = jnp.array([2.0, 1.0, 0.5])
    >>> float(loss_curve_reward(losses))
    0.75
    >>> float(loss_curve_reward(losses, reduce="mean"))
    0.416...
  """
  losses = jnp.asarray(losses)
  if losses.ndim != 1 or losses.shape[0] < 1:
    raise ValueError(
        "loss_curve_reward: losses must be a non-empty 1-D array, got shape"
        f" {losses.shape}; under jax.vmap pass one curve per arm."
    )
  if reduce == "final":
    value = losses[-1]
  elif reduce == "mean":
    value = jnp.mean(losses)
  else:
    raise ValueError(
        f"loss_curve_reward: reduce must be 'final' or 'mean', got reduce={reduce!r}."
    )
  return loss_reward(value, losses[0])


def accuracy_reward(
    logits: jax.typing.ArrayLike, labels: jax.typing.ArrayLike
) -> jax.Array:
  """The fraction of examples whose largest logit is the label.

  Rows with a non-finite logit count as wrong, so a diverged model scores
  `0` rather than whatever `argmax` makes of NaN.

  Args:
    logits: `[..., num_examples, num_classes]` scores (or probabilities).
    labels: `[..., num_examples]` integer labels.

  Returns:
    The accuracy in `[0, 1]`, float32 (float64 under x64), reduced over the
    examples axis.

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_exptest import accuracy_reward
    >>> logits = jnp.array([[2.0, 1.0], [0.0, 3.0], [jnp.nan, 0.0]])
    >>> float(accuracy_reward(logits, jnp.array([0, 1, 1])))
    0.666...
  """
  logits = jnp.asarray(logits)
  correct = (jnp.argmax(logits, axis=-1) == labels) & jnp.all(
      jnp.isfinite(logits), axis=-1
  )
  return jnp.mean(correct.astype(jnp.result_type(float)), axis=-1)
