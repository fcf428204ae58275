"""Checks of `exptest`'s arguments, with messages that say how to fix the call.

Hyperparameters may be traced (one value per vmapped arm): only concrete
values are range-checked. The shapes the state depends on (`capacity`) must
be static.
"""

from typing import Any, Optional, Union

import jax
import jax.numpy as jnp

from optax_exptest._src import usage
from optax_exptest._src.paper_policy import PaperPolicy
from optax_exptest._src.policy import Policy
from optax_exptest._src.probing_policy import ProbingPolicy
from optax_exptest._src.window import MIN_WINDOW

DEFAULT_CAPACITY = 1024


def concrete_float(name: str, value: Any) -> Optional[float]:
  """`float(value)` for a concrete scalar, None when traced."""
  if callable(value):
    raise ValueError(
        f"exptest: {name} must be a number, got the callable {value!r}:"
        " ExpTest sets the rate itself; pass the rate it starts from."
    )
  if jnp.ndim(value) != 0:
    raise ValueError(
        f"exptest: {name} must be a scalar, got shape {jnp.shape(value)}; to"
        " run several values at once, jax.vmap over a function that builds"
        " exptest from one value."
    )
  try:
    return float(value)
  except (TypeError, jax.errors.ConcretizationTypeError):
    return None  # Traced (one value per vmapped arm): not checkable here.


def check_range(name: str, value: Any, low: float, high: float) -> None:
  v = concrete_float(name, value)
  if v is not None and not low < v < high:
    raise ValueError(
        f"exptest: {name} must lie in ({low}, {high}), got {name}={value!r}."
    )


def static_capacity(capacity: Any) -> int:
  if capacity is None:
    return DEFAULT_CAPACITY
  try:
    c = int(capacity)
  except (TypeError, jax.errors.ConcretizationTypeError):
    raise ValueError(
        "exptest: capacity sets the shape of the state and must be a Python"
        f" int, got {capacity!r}; under optax.inject_hyperparams pass"
        " static_args=('capacity',)."
    ) from None
  if c != capacity or c < MIN_WINDOW:
    raise ValueError(
        f"exptest: capacity must be an int of at least {MIN_WINDOW} (the fits"
        f" need {MIN_WINDOW} points), got capacity={capacity!r}."
    )
  return c


def check_patience(patience: Any) -> None:
  """An integer of at least 1 (may be traced: one per vmapped arm)."""
  message = (
      "exptest: divergence_patience must be an integer of at least 1 (the"
      f" faults in a row that confirm a divergence), got {patience!r}."
  )
  if patience is None or isinstance(patience, (bool, str)):
    raise ValueError(message)
  v = concrete_float("divergence_patience", patience)
  if v is not None and not (v >= 1 and v == int(v)):
    raise ValueError(message)


def check_update_args(value: Any, params: Any, extra_args: dict) -> None:
  """`update`'s `value` and `params`; a missing `value` is told with what
  came instead (`usage.missing_value_message`)."""
  if value is None:
    raise TypeError(usage.missing_value_message(extra_args))
  if jnp.ndim(value) != 0:
    raise ValueError(
        "exptest: value must be the scalar loss at `params`, got shape"
        f" {jnp.shape(value)}."
    )
  if params is None:
    raise ValueError(
        "exptest needs the parameters (to return them to the anchor on a reset"
        " or a divergence): call tx.update(grads, state, params, value=loss)."
    )


def check_anchor(anchor: Any) -> None:
  if anchor not in ("window", "init"):
    raise ValueError(
        f"exptest: anchor must be 'window' or 'init', got anchor={anchor!r}."
    )


def check_policy(policy: Any) -> None:
  """None (the paper's) or a `Policy` instance that jit can hash."""
  if policy is None:
    return
  if isinstance(policy, str):
    if policy not in POLICIES:
      raise ValueError(
          f"exptest: policy must be one of {sorted(POLICIES)} or a Policy"
          f" instance, got policy={policy!r}."
      )
    return
  if isinstance(policy, type) and issubclass(policy, Policy):
    raise ValueError(
        f"exptest: policy must be a Policy instance, got the class"
        f" {policy.__name__}; call it: policy={policy.__name__}()."
    )
  if not isinstance(policy, Policy):
    raise ValueError(
        f"exptest: policy must be an optax_exptest Policy, got {policy!r}."
    )
  try:
    hash(policy)
  except TypeError:
    raise ValueError(
        f"exptest: policy must be hashable (a frozen dataclass), got"
        f" {policy!r}: the update is compiled once per policy."
    ) from None


# The policies a name selects: `name -> (sgd_correction -> Policy)`.
POLICIES = {
    "paper": PaperPolicy,
    "probing": lambda sgd_correction: ProbingPolicy(),
}


def resolve_policy(policy: Union[None, str, Policy], sgd_correction: bool) -> Policy:
  """A `Policy` from `exptest`'s `policy` argument (None: the paper's)."""
  if policy is None:
    policy = "paper"
  if isinstance(policy, str):
    return POLICIES[policy](sgd_correction)
  return policy
