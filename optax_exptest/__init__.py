"""optax_exptest: learning-rate-free training for JAX and Optax.

* `exptest`: an Optax transformation that searches the learning rate from an
  upper bound and tunes it on plateaus, by hypothesis tests on the loss
  (arXiv 2411.16975).
* `lr_upper_bound`: the starting rate, from the inputs' correlation matrix.
* `lr_upper_bound_from_model`: the starting rate for any model, from the
  largest eigenvalue of its loss's curvature (Hessian or Gauss-Newton).
* `exptest_summary`: ExpTest's state as plain numbers, for loggers;
  `DECISION_COLORS`: one colour per decision, for plots.
* `stats`: the exponential and plateau tests.
* `policies`: the rules that turn the losses into decisions (`Policy`; the
  paper's Algorithm 1 is `PaperPolicy`, the default).
* `ZoomingSearch`, `zoom`: a Lipschitz-bandit (zooming) search over learning
  rates whose arms train many at a time with `jax.vmap`, sharded over devices
  (arXiv 2409.09783); `zooming` holds it and its reward helpers.
* `datasets`: loaders of MNIST, California housing and TFDS datasets for the
  examples and benchmarks.
* `flax_utils`: a `flax.linen` `TrainState` that passes the loss (extra
  `[flax]`); `integrations`: zooming inside Optuna and Ray Tune; `plotting`:
  a run's loss with ExpTest's decisions marked (extra `[plots]`).

The last four are imported on first use (`optax_exptest.plotting.plot_run`
works after `import optax_exptest` alone), so that training code pays only
for what it uses.
"""

from optax_exptest import policies
from optax_exptest import stats
from optax_exptest import zooming
from optax_exptest._src.bound import lr_upper_bound
from optax_exptest._src.curvature import lr_upper_bound_from_model
from optax_exptest._src.decision import Decision
from optax_exptest._src.exptest import exptest
from optax_exptest._src.exptest import ExpTestState
from optax_exptest._src.decision import Phase
from optax_exptest._src.observe import DECISION_COLORS
from optax_exptest._src.observe import exptest_summary
from optax_exptest._src.observe import find_exptest_state
from optax_exptest._src.rewards import accuracy_reward
from optax_exptest._src.rewards import loss_curve_reward
from optax_exptest._src.rewards import loss_reward
from optax_exptest._src.vmapped_rounds import zoom
from optax_exptest._src.zooming_search import ZoomingSearch

__version__ = "0.1.0"

# Submodules imported on first access: training code that never loads data,
# plots or uses Flax's linen does not pay for them (file and network I/O, TFDS
# glue, matplotlib, Flax), and `import optax_exptest` needs none of the extras.
_LAZY_SUBMODULES = ("datasets", "flax_utils", "integrations", "plotting")


def __getattr__(name: str):
  if name in _LAZY_SUBMODULES:
    import importlib  # pylint: disable=g-import-not-at-top
    return importlib.import_module(f"{__name__}.{name}")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
  # `flax_utils` raises ImportError without Flax: listed only where it imports,
  # so that `help(optax_exptest)` and `inspect.getmembers` (which call getattr
  # on every listed name) work without the extra.
  import importlib.util  # pylint: disable=g-import-not-at-top
  lazy = [m for m in _LAZY_SUBMODULES
          if m != "flax_utils" or importlib.util.find_spec("flax") is not None]
  return sorted(set(globals()) | set(lazy))


# `flax_utils` is not in `__all__`: `from optax_exptest import *` would then
# need Flax.
__all__ = [
    "DECISION_COLORS",
    "Decision",
    "ExpTestState",
    "Phase",
    "ZoomingSearch",
    "accuracy_reward",
    "datasets",
    "exptest",
    "exptest_summary",
    "find_exptest_state",
    "integrations",
    "loss_curve_reward",
    "loss_reward",
    "lr_upper_bound",
    "lr_upper_bound_from_model",
    "plotting",
    "policies",
    "stats",
    "zoom",
    "zooming",
]
