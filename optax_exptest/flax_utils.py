"""Flax integration: a linen `TrainState` that passes the loss to ExpTest.

`flax.nnx` needs nothing of ours: `nnx.Optimizer.update(model, grads,
value=loss)` forwards `value` to the transformation. `flax.linen`'s
`TrainState.apply_gradients(grads=...)` does not forward extra arguments
(its keyword arguments replace dataclass fields), hence this subclass.
Importing this module needs `pip install "optax_exptest[flax]"`.
"""

from typing import Any

import optax

try:
  from flax.training import train_state
except ImportError as e:  # pragma: no cover - depends on the environment
  raise ImportError(
      "optax_exptest.flax_utils needs Flax: pip install \"optax_exptest[flax]\""
  ) from e

__all__ = ["TrainState"]


class TrainState(train_state.TrainState):
  """A `flax.training.train_state.TrainState` for ExpTest (or any optimizer
  whose `update` takes extra arguments such as `value=`).

  `apply_gradients(grads=..., value=loss)` passes `value` (and every keyword
  named in `opt_kwargs`) to `tx.update`; other keywords replace dataclass
  fields as in Flax's `TrainState`.

  Examples:
    >>> import jax, jax.numpy as jnp, flax.linen as nn, optax_exptest
    >>> from optax_exptest.flax_utils import TrainState
    >>> model = nn.Dense(1)
    >>> x, y = jnp.ones((8, 3)), jnp.zeros((8, 1))
    >>> params = model.init(jax.random.PRNGKey(0), x)["params"]
    >>> state = TrainState.create(
    ...     apply_fn=model.apply, params=params,
    ...     tx=optax_exptest.exptest(0.1, sgd_correction=False))
    >>> def loss_fn(params):
    ...   return jnp.mean((state.apply_fn({"params": params}, x) - y) ** 2)
    >>> loss, grads = jax.value_and_grad(loss_fn)(state.params)
    >>> state = state.apply_gradients(grads=grads, value=loss)
    >>> int(state.step), optax_exptest.exptest_summary(state.opt_state)["step"]
    (1, 1)
  """

  def apply_gradients(self, *, grads: Any, value: Any = None,
                      opt_kwargs: Any = None, **kwargs: Any) -> "TrainState":
    """One optimizer step.

    Args:
      grads: gradients with the structure of `params`.
      value: the loss at `params`, passed to `tx.update(..., value=value)`.
      opt_kwargs: more keyword arguments for `tx.update` (a dict).
      **kwargs: dataclass fields to replace, as in Flax's `TrainState`.

    Returns:
      The new state, `step` incremented.
    """
    extra = dict(opt_kwargs or {})
    if value is not None:
      extra["value"] = value
    tx = optax.with_extra_args_support(self.tx)
    updates, opt_state = tx.update(grads, self.opt_state, self.params, **extra)
    return self.replace(
        step=self.step + 1,
        params=optax.apply_updates(self.params, updates),
        opt_state=opt_state,
        **kwargs,
    )
