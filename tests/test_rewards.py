"""Tests of the rewards for `train_fn`: losses and accuracies into `[0, 1]`."""
import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optax_exptest._src import rewards


def test_loss_reward():
  got = rewards.loss_reward(jnp.array([0.0, 0.5, 2.0, 3.0, jnp.nan, jnp.inf]), 2.0)
  np.testing.assert_allclose(got, [1.0, 0.75, 0.0, 0.0, 0.0, 0.0])
  assert float(rewards.loss_reward(1.0, 0.0)) == 0.0
  assert float(rewards.loss_reward(1.0, jnp.nan)) == 0.0
  batched = jax.jit(jax.vmap(rewards.loss_reward))(
      jnp.array([1.0, 1.0]), jnp.array([2.0, 4.0]))
  np.testing.assert_allclose(batched, [0.5, 0.75])


def test_loss_curve_reward():
  losses = jnp.array([4.0, 2.0, 1.0, 1.0])
  assert float(rewards.loss_curve_reward(losses)) == 0.75
  assert float(rewards.loss_curve_reward(losses, reduce="mean")) == 0.5
  assert float(rewards.loss_curve_reward(losses.at[2].set(jnp.nan), reduce="mean")) == 0.0
  assert float(rewards.loss_curve_reward(losses.at[-1].set(jnp.inf))) == 0.0
  curves = jnp.stack([losses, losses.at[-1].set(jnp.nan)])
  np.testing.assert_allclose(jax.vmap(rewards.loss_curve_reward)(curves), [0.75, 0.0])
  with pytest.raises(ValueError, match="reduce must be"):
    rewards.loss_curve_reward(losses, reduce="max")
  with pytest.raises(ValueError, match="1-D"):
    rewards.loss_curve_reward(jnp.ones((2, 2)))


def test_accuracy_reward():
  logits = jnp.array([[2.0, 1.0], [0.0, 3.0], [jnp.nan, 0.0], [1.0, jnp.inf]])
  labels = jnp.array([0, 1, 1, 1])
  assert float(rewards.accuracy_reward(logits, labels)) == 0.5
  batched = jax.vmap(rewards.accuracy_reward, in_axes=(0, None))(
      jnp.stack([logits, -logits]), labels)
  np.testing.assert_allclose(batched, [0.5, 0.0])


@pytest.mark.parametrize("module", [rewards])
def test_docstring_examples(module):
  result = doctest.testmod(
      module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
  )
  assert result.attempted > 0 and result.failed == 0
