"""Flax integration: a linen `TrainState` that passes the loss to ExpTest.

`flax.nnx` needs nothing of ours: `nnx.Optimizer.update(model, grads,
value=loss)` forwards `value` to the transformation. `flax.linen`'s stock
`flax.training.train_state.TrainState.apply_gradients(grads=...)` does not:
it calls `tx.update(grads, opt_state, params)` and hands its other keyword
arguments to `replace` as dataclass fields. With ExpTest,
`state.apply_gradients(grads=grads, value=loss)` on it raises ExpTest's
"needs the training loss" `TypeError` (the loss never reaches the update).
Two routes:

* `TrainState` below in place of Flax's (the same fields and `create`;
  subclass it as you would Flax's, e.g. to add `batch_stats`);
* `apply_gradients(state, grads=grads, value=loss)` on any Flax
  `TrainState`, stock or your own subclass, unchanged.

Importing this module needs `pip install "optax_exptest[flax]"`.
"""

from typing import Any, TypeVar

import optax

try:
  from flax.training import train_state
except ImportError as e:  # pragma: no cover - depends on the environment
  raise ImportError(
      "optax_exptest.flax_utils needs Flax: pip install \"optax_exptest[flax]\""
  ) from e

__all__ = ["TrainState", "apply_gradients"]

_State = TypeVar("_State", bound=train_state.TrainState)
# Flax's name for the collection whose "gradients" replace its values (fp8
# scales); `train_state` imports it from `flax.linen.fp8_ops`.
_OVERWRITE = getattr(train_state, "OVERWRITE_WITH_GRADIENT", "_overwrite_with_gradient")


def apply_gradients(state: _State, *, grads: Any, value: Any = None,
                    opt_kwargs: Any = None, **kwargs: Any) -> _State:
  """One optimizer step of a Flax `TrainState` that passes the loss.

  Flax's `TrainState.apply_gradients`, with `value` (and `opt_kwargs`)
  forwarded to `tx.update`: use it on Flax's stock `TrainState` or on your
  own subclass of it.

  Args:
    state: a `flax.training.train_state.TrainState` (or a subclass).
    grads: gradients with the structure of `state.params`.
    value: the loss at `state.params`, passed to `tx.update(...,
      value=value)`.
    opt_kwargs: more keyword arguments for `tx.update` (a dict).
    **kwargs: dataclass fields to replace, as in Flax's `apply_gradients`.

  Returns:
    The new state, `step` incremented.

  Examples:
    >>> import jax, jax.numpy as jnp, flax.linen as nn, optax_exptest
    >>> from flax.training import train_state
    >>> from optax_exptest import flax_utils
    >>> model = nn.Dense(1)
    >>> x, y = jnp.ones((8, 3)), jnp.zeros((8, 1))
    >>> state = train_state.TrainState.create(  # Flax's own TrainState
    ...     apply_fn=model.apply, params=model.init(jax.random.key(0), x)["params"],
    ...     tx=optax_exptest.exptest(0.1, sgd_correction=False))
    >>> loss_fn = lambda p: jnp.mean((state.apply_fn({"params": p}, x) - y) ** 2)
    >>> loss, grads = jax.value_and_grad(loss_fn)(state.params)
    >>> state = flax_utils.apply_gradients(state, grads=grads, value=loss)
    >>> int(state.step), optax_exptest.exptest_summary(state.opt_state)["step"]
    (1, 1)
  """
  extra = dict(opt_kwargs or {})
  if value is not None:
    extra["value"] = value
  # As Flax's `apply_gradients`: the optimizer sees `params["params"]` only
  # when the params hold a collection that the gradients overwrite.
  overwrite = isinstance(grads, dict) and _OVERWRITE in grads
  grads_opt = grads["params"] if overwrite else grads
  params_opt = state.params["params"] if overwrite else state.params
  tx = optax.with_extra_args_support(state.tx)
  updates, opt_state = tx.update(grads_opt, state.opt_state, params_opt, **extra)
  params = optax.apply_updates(params_opt, updates)
  if overwrite:
    params = {"params": params, _OVERWRITE: grads[_OVERWRITE]}
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state, **kwargs)


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
    """One optimizer step (see the module's `apply_gradients`).

    Args:
      grads: gradients with the structure of `params`.
      value: the loss at `params`, passed to `tx.update(..., value=value)`.
      opt_kwargs: more keyword arguments for `tx.update` (a dict).
      **kwargs: dataclass fields to replace, as in Flax's `TrainState`.

    Returns:
      The new state, `step` incremented.
    """
    return apply_gradients(self, grads=grads, value=value, opt_kwargs=opt_kwargs, **kwargs)
