"""The seam between ExpTest's state machine and its policy.

The state machine (`exptest.py`) records every loss, skips faults, confirms
divergences and collapses, keeps the anchor and the mini-batch correction,
and applies the update. A *policy* decides what the losses mean: where the
search starts, how long each window is, which test it gets, and what
follows the test. It is a static value (hashable, like zooming's
`Variant`), consulted in the rare decision branch only:

* `start_rate(learning_rate, rho)`: the rate the run starts at, given the
  rate passed to `exptest` and `rho`, the inner's factor to the
  gradient-descent rate (`inner_rules`). Called at `init` and again at the
  first finite loss, when a normalizing inner's `rho` is measured.
* `first_window(window, scales, learning_rate, hp)`: the window's length once
  the first finite loss has fixed the run's scales (`scales.Scales`).
* `decide(event, state, hp, mode)`: at each of the window's events
  (its end, a full buffer, a confirmed divergence), the `decision.Verdict`:
  what was decided, the phase, the rate's factor, whether the parameters
  return to the anchor, the p-value, and the next window. Nothing
  downstream decodes it again.

A policy's own memory (`init_state`) rides in the state as arrays; the
paper's needs none. `docs/design.md` ("How to add a policy") walks through
one; `paper_policy.py` is the paper's Algorithm 1, the default.
"""

import abc
import enum
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optax_exptest._src import inner_rules
from optax_exptest._src import scales as scales_lib
from optax_exptest._src import window as window_lib
from optax_exptest._src.decision import Verdict


class AnchorMode(enum.Enum):
  """Where the parameters return, resolved once from `exptest`'s `reset`
  and `anchor` arguments.

  =================  ==========================  ===========================
  mode               a failed search test        a confirmed divergence
  =================  ==========================  ===========================
  TUNING_WINDOWS     returns to `init`'s         returns to the anchor: `init`'s
  (reset, "window")  parameters                  while searching, then the
                                                 last completed window's
  INIT               returns to `init`'s         returns to `init`'s and
  (reset, "init")    parameters                  searches again
  EVERY_WINDOW       keeps the parameters        returns to the last
  (reset=False)                                  completed window's
  =================  ==========================  ===========================

  Examples:
    >>> from optax_exptest.policies import AnchorMode
    >>> AnchorMode.of(reset=True, anchor="window").name
    'TUNING_WINDOWS'
    >>> AnchorMode.of(reset=False, anchor="init").restarts
    False
  """

  TUNING_WINDOWS = "tuning_windows"
  INIT = "init"
  EVERY_WINDOW = "every_window"

  @classmethod
  def of(cls, reset: bool, anchor: str) -> "AnchorMode":
    if not reset:
      return cls.EVERY_WINDOW
    return cls.INIT if anchor == "init" else cls.TUNING_WINDOWS

  @property
  def restarts(self) -> bool:
    """Whether a failed search test returns to the anchor (`reset`)."""
    return self is not AnchorMode.EVERY_WINDOW

  @property
  def follows(self) -> bool:
    """Whether the anchor follows the completed windows."""
    return self is not AnchorMode.INIT


class Hyperparameters(NamedTuple):
  """The numeric hyperparameters, as arrays of the state's dtype (each may
  be traced: one per vmapped arm).

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_exptest.policies import Hyperparameters
    >>> hp = Hyperparameters(*(jnp.float32(x) for x in (0.05, 0.33, 1e3, 3, 0, 1e4)))
    >>> float(hp.beta)
    0.33...
  """

  alpha: jax.Array
  beta: jax.Array
  divergence_factor: jax.Array
  divergence_patience: jax.Array
  loss_floor: jax.Array
  horizon: jax.Array


class Event(NamedTuple):
  """What the state machine knows when it consults the policy.

  Attributes:
    phase: the current `Phase` (int32).
    learning_rate: the current rate.
    p_value: the last test's p-value.
    window: the window, with this step's loss in it.
    scales: the run's scales (`scales.Scales`).
    complete: the window holds its length and no divergence is confirmed:
      its test is due.
    diverged: a divergence (or a collapse) is confirmed at this step.
    step: the number of updates before this one (int32).

  Examples:
    >>> from optax_exptest.policies import Event
    >>> Event._fields[:4]
    ('phase', 'learning_rate', 'p_value', 'window')
  """

  phase: jax.Array
  learning_rate: jax.Array
  p_value: jax.Array
  window: window_lib.WindowState
  scales: scales_lib.Scales
  complete: jax.Array
  diverged: jax.Array
  step: jax.Array


class Policy(abc.ABC):
  """A policy: the rules that turn the losses into decisions.

  Subclasses are hashable (frozen dataclasses or classes with value
  equality): `exptest` compiles one update per policy. Their methods run
  inside `jit` and `vmap` on scalars and the window; they must not branch
  in Python on traced values.

  Attributes:
    measures_correction: whether the state machine keeps the mini-batch
      correction's sums (a gradient-sized sum) for the policy's windows
      (`Verdict.measure_steps`).
    saves_parameters: whether the state machine keeps a second copy of the
      parameters for the policy (`Verdict.save`, `Verdict.recall`).

  Examples:
    A policy is passed to `exptest`; the paper's is the default
    (`tests/test_policy.py` writes one of its own):

    >>> import optax_exptest
    >>> from optax_exptest.policies import PaperPolicy, Policy
    >>> isinstance(PaperPolicy(), Policy)
    True
    >>> tx = optax_exptest.exptest(0.1, policy=PaperPolicy(sgd_correction=False))
  """

  measures_correction: bool = False
  saves_parameters: bool = False

  def init_state(self, dtype: jnp.dtype) -> Any:
    """The policy's own memory, a pytree of arrays (none by default)."""
    del dtype
    return ()

  def start_rate(self, learning_rate: Any, rho: Any) -> Any:
    """The rate the run starts at: the rate whose effective rate is the
    given one (`inner_rules.start_rate`)."""
    return inner_rules.start_rate(learning_rate, rho)

  @abc.abstractmethod
  def first_window(
      self,
      window: window_lib.WindowState,
      scales: scales_lib.Scales,
      learning_rate: jax.Array,
      hp: Hyperparameters,
  ) -> window_lib.WindowState:
    """The window's lengths once the scales are fixed (its losses kept)."""

  @abc.abstractmethod
  def decide(
      self, event: Event, state: Any, hp: Hyperparameters, mode: AnchorMode
  ) -> tuple[Verdict, Any]:
    """The verdict at an event, and the policy's new memory."""
