"""ExpTest's state as plain numbers, for loggers and progress bars."""

import collections.abc
import types
from typing import Any, Mapping, Union

import jax
import jax.numpy as jnp
import numpy as np

from optax_exptest._src.decision import Decision, Phase
from optax_exptest._src.exptest import ExpTestState
from optax_exptest._src.history import History
from optax_exptest._src.history import events

Number = Union[int, float]

#: One matplotlib colour per decision, for marking a run's decisions on its
#: loss curve; the examples, notebooks and benchmarks all use it. Green: the
#: loss decays exponentially, the search ends; red: no decay, rate cut and
#: parameters reset; grey: the loss still decreases, rate kept; orange:
#: plateau, rate cut; black: diverged (faults in a row); purple: a fault
#: skipped (a zero update); blue: a probe scored; cyan: the search by probes
#: ended at the best probe. `Decision.NONE` has no colour.
DECISION_COLORS: Mapping[Decision, str] = types.MappingProxyType({
    Decision.EXPONENTIAL: "C2",
    Decision.RESTART: "C3",
    Decision.DECREASING: "0.7",
    Decision.PLATEAU: "C1",
    Decision.DIVERGED: "k",
    Decision.SKIPPED: "C4",
    Decision.PROBE: "C0",
    Decision.BEST_PROBE: "C9",
})


# The fields `exptest_summary` reads: a mapping that holds them all is an
# `ExpTestState` whose NamedTuple types were dropped on the way, as
# `nnx.state(optimizer)`, `nnx.to_pure_dict` and
# `flax.serialization.to_state_dict` (a checkpoint read without a target) do.
_SUMMARY_FIELDS = frozenset(ExpTestState._fields[:8]) | {"window"}


def _is_named_tuple_type(annotation: Any) -> bool:
  return isinstance(annotation, type) and issubclass(annotation, tuple) and hasattr(
      annotation, "_fields")


def _from_mapping(cls: type, mapping: Mapping) -> Any:
  """`cls` (a NamedTuple type) rebuilt from a mapping of its field names.

  Fields annotated with a NamedTuple type are rebuilt the same way, other
  subtrees (the anchor, the inner's state) are kept as they are, and single
  values become arrays (Flax's variables hold them). A field that the mapping
  lacks (an empty subtree, which `nnx.state` drops) becomes `()`.
  """
  values = {}
  for name in cls._fields:
    value = mapping.get(name, ())
    annotation = cls.__annotations__.get(name)
    if _is_named_tuple_type(annotation) and isinstance(value, collections.abc.Mapping):
      value = _from_mapping(annotation, value)
    elif not isinstance(value, (collections.abc.Mapping, list, tuple)):
      value = jnp.asarray(value)
    values[name] = value
  return cls(**values)


def _mappings_with_state(tree: Any) -> list[Mapping]:
  """The mappings inside `tree` (nested mappings, lists and tuples) that hold
  an `ExpTestState`'s fields by name."""
  if isinstance(tree, collections.abc.Mapping):
    if _SUMMARY_FIELDS <= set(tree):
      return [tree]
    children = tree.values()
  elif isinstance(tree, (list, tuple)):
    children = tree
  else:
    return []
  return [m for child in children for m in _mappings_with_state(child)]


def find_exptest_state(opt_state: Any) -> ExpTestState:
  """The `ExpTestState` inside an optimizer state (a chain, a Flax wrapper).

  Also finds it where its NamedTuple types were dropped: in
  `nnx.state(optimizer)` (or `nnx.to_pure_dict` of it) and in a state dict
  (`flax.serialization.to_state_dict`, a checkpoint restored without a
  target); the state is then rebuilt from the fields' names.

  Args:
    opt_state: an optimizer state holding exactly one `ExpTestState`: an
      Optax state, an `nnx.Optimizer`, `nnx.state(optimizer)`, a state dict.

  Returns:
    That state.

  Raises:
    ValueError: none, or more than one, is found.

  Examples:
    >>> import jax.numpy as jnp, optax, optax_exptest
    >>> tx = optax.chain(optax.clip(1.0), optax_exptest.exptest(0.1))
    >>> state = tx.init(jnp.zeros(2))
    >>> type(optax_exptest.find_exptest_state(state)).__name__
    'ExpTestState'
  """
  found = [
      x for x in jax.tree.leaves(
          opt_state, is_leaf=lambda x: isinstance(x, ExpTestState)
      )
      if isinstance(x, ExpTestState)
  ]
  if not found:
    found = [_from_mapping(ExpTestState, m) for m in _mappings_with_state(opt_state)]
  if len(found) != 1:
    raise ValueError(
        f"expected one ExpTestState in the optimizer state, found {len(found)}"
        f" in a {type(opt_state).__name__}: pass the state of an optimizer built"
        " with optax_exptest.exptest (an Optax state, an nnx.Optimizer,"
        " nnx.state(optimizer) or a state dict of one)."
    )
  return found[0]


def _plain(x: Any) -> Union[Number, list]:
  """A Python number for a scalar, nested lists for a batch (vmapped arms)."""
  a = np.asarray(x)
  return a.item() if a.ndim == 0 else a.tolist()


def exptest_summary(opt_state: Any) -> dict[str, Any]:
  """ExpTest's current rate, phase and decisions as plain Python numbers.

  Works on a bare `ExpTestState`, on one inside a chain or a Flax optimizer
  (`optimizer`, `optimizer.opt_state` or `nnx.state(optimizer)`), on a state
  dict, and on vmapped states (every entry is then a list, one value per arm).
  Call it outside `jit`: it copies the numbers to the host.

  Args:
    opt_state: an optimizer state holding one `ExpTestState`.

  Returns:
    A dict with `learning_rate`, `phase` (0 searching, 1 tuning),
    `phase_name`, `num_cuts`, `num_resets`, `num_skipped` (steps skipped as
    transient faults), `p_value` (of the last test),
    `decision` and `decision_name` (what the last update decided), `step`,
    `window_fill` (losses in the current window over its length, in
    [0, 1]), `window_length`, and `history`: the run's last changes
    (cuts, returns to the anchor, the switch to tuning; at most
    `HISTORY_LENGTH`, 16), oldest first, each a dict with `step`,
    `decision`, `decision_name`, `rate_before`, `learning_rate` (after)
    and `p_value`; `plotting.plot_run(losses, summary["history"])` draws
    them on the run's loss.

  Examples:
    >>> import jax, jax.numpy as jnp, optax_exptest
    >>> tx = optax_exptest.exptest(0.1, sgd_correction=False)
    >>> params = jnp.zeros(2)
    >>> state = tx.init(params)
    >>> _, state = tx.update(jnp.ones(2), state, params, value=1.0)
    >>> summary = optax_exptest.exptest_summary(state)
    >>> summary["learning_rate"], summary["phase_name"], summary["step"]
    (0.1..., 'searching', 1)
    >>> summary["history"]  # nothing changed yet
    []
  """
  s = find_exptest_state(opt_state)
  count = np.asarray(s.window.losses.count, np.float64)
  length = np.asarray(s.window.length, np.float64)
  phase = np.asarray(s.phase)
  decision = np.asarray(s.decision)
  name = lambda values, enum: np.vectorize(
      lambda v: enum(int(v)).name.lower(), otypes=[object]
  )(values)
  return dict(
      learning_rate=_plain(s.learning_rate),
      phase=_plain(phase),
      phase_name=_plain(name(phase, Phase)),
      num_cuts=_plain(s.num_cuts),
      num_resets=_plain(s.num_resets),
      num_skipped=_plain(s.num_skipped),
      p_value=_plain(s.p_value),
      decision=_plain(decision),
      decision_name=_plain(name(decision, Decision)),
      step=_plain(s.step),
      window_fill=_plain(np.clip(count / length, 0.0, 1.0)),
      window_length=_plain(s.window.length),
      # A state dict saved before the history existed has none.
      history=events(s.history) if isinstance(s.history, History) else [],
  )
