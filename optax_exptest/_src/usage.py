"""Mistakes in how ExpTest is combined with other code, named when they happen.

Each would otherwise pass silently or with a message that hides the cause:

* momentum or Adam's scaling chained *before* ExpTest
  (`optax.chain(optax.scale_by_adam(), exptest(eta))`): ExpTest cannot
  re-initialise their state on a reset nor map the rate to their step
  (`docs/design.md`, 4a). Told at `init` (`warn_if_stateful_before`);
* the loss passed under another keyword (`loss=`), or not passed by a
  caller that does not forward it (Flax's stock linen `TrainState`): the
  error names the keyword or the caller (`missing_value_message`);
* a rate set through `optax.inject_hyperparams` after `init`: ExpTest reads
  the injected `learning_rate` once, as its starting rate
  (`check_given_rate`).

ExpTest sees neither the transformations around it nor who calls it, so
the first and the second look at the Python call stack, and only on the
paths where they have something to say: `init`, and an `update` that is
about to raise. What they cannot see is written beside each.
"""

import sys
import threading
import types
import warnings
from typing import Any, Callable, Iterator, Optional

import jax
import jax.numpy as jnp
import numpy as np

from optax_exptest._src import history as history_lib
from optax_exptest._src.lazy_cond import lazy_update


def _frames() -> Iterator[types.FrameType]:
  """The Python call stack, innermost first."""
  frame = sys._getframe(1)  # pylint: disable=protected-access
  while frame is not None:
    yield frame
    frame = frame.f_back


def _in_module(frame: types.FrameType, module: str, function: str) -> bool:
  return (frame.f_globals.get("__name__") == module
          and frame.f_code.co_name == function)


# ----------------------------------------------------------------------------
# A stateful transformation chained before ExpTest.

_CHAIN_MODULE = "optax.transforms._combining"


def _inits_before(frame: types.FrameType) -> Optional[tuple[Callable, ...]]:
  """The `init` functions that an `optax.chain` or `optax.named_chain` frame
  ran before the element it is running now, or None for another frame."""
  if _in_module(frame, _CHAIN_MODULE, "<genexpr>"):  # chain: one genexpr
    parent = frame.f_back
    current, inits = frame.f_locals.get("fn"), parent.f_locals.get("init_fns")
    if inits is not None and current in inits:
      return tuple(inits[:inits.index(current)])
  elif _in_module(frame, _CHAIN_MODULE, "init_fn"):  # named_chain: a loop
    current, named = frame.f_locals.get("tx"), frame.f_locals.get("transforms")
    if named is not None and current is not None:
      txs = [tx for _, tx in named]
      if current in txs:
        return tuple(tx.init for tx in txs[:txs.index(current)])
  return None


def _holds_params_like(state: Any, params: Any) -> bool:
  """Whether `state` has a subtree shaped as `params` with float leaves
  (a momentum, Adam's moments): a per-parameter memory."""
  treedef = jax.tree.structure(params)
  shapes = [(jnp.shape(x),) for x in jax.tree.leaves(params)]

  def like(node):
    if jax.tree.structure(node) != treedef:
      return False
    leaves = jax.tree.leaves(node)
    return ([(jnp.shape(x),) for x in leaves] == shapes
            and all(jnp.issubdtype(x.dtype, jnp.floating) for x in leaves))

  found = []
  jax.tree.map(lambda n: found.append(like(n)), state,
               is_leaf=lambda n: like(n) or not jax.tree.leaves(n))
  return any(found)


def _state_names(state: Any) -> str:
  names = []
  for node in jax.tree.leaves(state, is_leaf=lambda n: hasattr(n, "_fields")):
    if hasattr(node, "_fields") and type(node).__name__ not in names:
      names.append(type(node).__name__)
  return ", ".join(names) or type(state).__name__


# Set while the elements before ExpTest are traced: one of them may be an
# ExpTest, whose `init` would otherwise look at the same chain again.
_probing = threading.local()


def warn_if_stateful_before(params: Any) -> None:
  """At `init`: warns once if a transformation that keeps a per-parameter
  state runs before ExpTest in an `optax.chain` (or `named_chain`).

  How: the call stack of `init` holds each enclosing chain's `init`, which
  knows its elements and the one running; the elements before ExpTest are
  traced with `jax.eval_shape` (no memory, no compute), and a state with a
  subtree shaped as the parameters (a momentum, Adam's moments) is one that
  ExpTest's reset cannot restart. Stateless ones (`clip`,
  `add_decayed_weights`) pass. Not seen: other combinators
  (`optax.partition`, a hand-written chain), and a chain whose `init` was
  not traced in this process (a state restored from a checkpoint).
  """
  if getattr(_probing, "active", False):
    return
  inits = [init for frame in _frames() for init in _inits_before(frame) or ()]
  if not inits:
    return
  shapes = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), params
  )
  _probing.active = True
  try:
    states = [_state_of(init, shapes) for init in inits]
  finally:
    _probing.active = False
  for state in states:
    if state is not None and _holds_params_like(state, shapes):
      warnings.warn(
          f"exptest: a transformation with a per-parameter state"
          f" ({_state_names(state)}) runs before ExpTest in an optax.chain."
          " ExpTest cannot restart its state when it resets the parameters,"
          " nor start from the rate at which its step moves like gradient"
          " descent at the bound. Pass it as exptest(eta, inner=...):"
          " e.g. exptest(eta, inner=optax.scale_by_adam()).",
          UserWarning, stacklevel=3,
      )
      return


def _state_of(init: Callable, shapes: Any) -> Any:
  """The shapes of `init`'s state, or None when it cannot be traced alone."""
  try:
    return jax.eval_shape(init, shapes)
  except Exception:  # pylint: disable=broad-except
    return None


# ----------------------------------------------------------------------------
# The loss passed under another name, or not forwarded.

_FLAX_LINEN = ("flax.training.train_state", "apply_gradients")
_FLAX_NNX = ("flax.nnx.training.optimizer", "update")


def missing_value_message(extra_args: dict) -> str:
  """The error for an `update` without `value=`: it names the keywords that
  came instead and the caller that dropped it (Flax's linen `TrainState`,
  `nnx.Optimizer`)."""
  message = "exptest's update needs the training loss at `params` as `value=`"
  if extra_args:
    given = ", ".join(f"{k}=" for k in sorted(extra_args))
    return message + (
        f"; it got {given} instead. Pass the loss as value=:"
        " tx.update(grads, state, params, value=loss)."
    )
  for frame in _frames():
    if _in_module(frame, *_FLAX_LINEN):
      return message + (
          ". Flax's flax.training.train_state.TrainState.apply_gradients does"
          " not pass value= to the optimizer (it sets it as a dataclass field):"
          " use optax_exptest.flax_utils.TrainState in its place, or"
          " optax_exptest.flax_utils.apply_gradients(state, grads=grads,"
          " value=loss) on your state."
      )
    if _in_module(frame, *_FLAX_NNX):
      return message + (
          ": call optimizer.update(model, grads, value=loss)."
      )
  return message + ": call tx.update(grads, state, params, value=loss)."


# ----------------------------------------------------------------------------
# A rate injected after `init`.


def called_by_inject_hyperparams() -> bool:
  """Whether `exptest` is being built by `optax.inject_hyperparams`, whose
  `init` and `update` build the transformation from the injected values."""
  return any(
      frame.f_globals.get("__name__") == "optax.schedules._inject"
      for frame in _frames()
  )


def _same(a: Any, b: Any) -> Any:
  """Equal, NaN equal to NaN (a traced NaN rate is not a change)."""
  return (a == b) | ((a != a) & (b != b))


def _number(x: Any) -> str:
  a = np.asarray(x)
  return f"{a.item():.4g}" if a.size == 1 else np.array2string(a, precision=4)


def _rate_changed_message(given: Any, injected: Any) -> str:
  return (
      f"exptest: the injected learning_rate changed from {_number(given)}"
      f" to {_number(injected)} after init. ExpTest reads it once, at"
      " init, as its starting rate; after that it sets the rate itself, so"
      " the change has no effect (nor does the hyperparams entry show the"
      " current rate). Read the current rate with"
      " optax_exptest.exptest_summary(opt_state)['learning_rate']; to start"
      " again from another rate, call init."
  )


def _warn_rate_changed(given: Any, injected: Any) -> None:
  warnings.warn(_rate_changed_message(given, injected), UserWarning, stacklevel=2)


def _note_change(history: history_lib.History, injected: jax.Array):
  jax.debug.callback(_warn_rate_changed, history.given_rate, injected)
  return history._replace(given_rate=injected)


def check_given_rate(
    history: history_lib.History, learning_rate: Any
) -> history_lib.History:
  """Warns when the rate `update` was built with (the injected one) is not
  the one `init` was: once per change, and the change is recorded so that
  it is told once.

  Eagerly the check runs on the host; inside `jit` (a traced injected
  rate) it is a branch that runs only on a change (`lazy_update`), and
  its warning comes through `jax.debug.callback`.
  """
  injected = jnp.asarray(learning_rate, history.given_rate.dtype)
  if not any(isinstance(x, jax.core.Tracer) for x in (injected, history.given_rate)):
    given = np.asarray(history.given_rate)
    if not np.all(_same(given, np.asarray(injected))):
      _warn_rate_changed(given, injected)
      return history._replace(given_rate=injected)
    return history
  history, injected = jax.lax.stop_gradient((history, injected))
  return lazy_update(
      ~_same(injected, history.given_rate), _note_change, history, injected
  )
