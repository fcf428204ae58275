"""optax_exptest: learning-rate-free training for JAX and Optax.

* `exptest`: an Optax transformation that searches the learning rate from an
  upper bound and tunes it on plateaus, by hypothesis tests on the loss
  (arXiv 2411.16975).
* `lr_upper_bound`: the starting rate, from the inputs' correlation matrix.
* `exptest_summary`: ExpTest's state as plain numbers, for loggers.
* `stats`: the exponential and plateau tests.
* `ZoomingSearch`, `zoom`: a Lipschitz-bandit (zooming) search over learning
  rates whose arms train many at a time with `jax.vmap`, sharded over devices
  (arXiv 2409.09783); `zooming` holds it and its reward helpers.
"""

from optax_exptest import datasets
from optax_exptest import stats
from optax_exptest import zooming
from optax_exptest._src.bound import lr_upper_bound
from optax_exptest._src.exptest import Decision
from optax_exptest._src.exptest import exptest
from optax_exptest._src.exptest import ExpTestState
from optax_exptest._src.exptest import Phase
from optax_exptest._src.observe import exptest_summary
from optax_exptest._src.observe import find_exptest_state
from optax_exptest._src.rewards import accuracy_reward
from optax_exptest._src.rewards import loss_curve_reward
from optax_exptest._src.rewards import loss_reward
from optax_exptest._src.vmapped_rounds import zoom
from optax_exptest._src.zooming_search import ZoomingSearch

__version__ = "0.1.0"

__all__ = [
    "Decision",
    "ExpTestState",
    "Phase",
    "ZoomingSearch",
    "accuracy_reward",
    "datasets",
    "exptest",
    "exptest_summary",
    "find_exptest_state",
    "loss_curve_reward",
    "loss_reward",
    "lr_upper_bound",
    "stats",
    "zoom",
    "zooming",
]
