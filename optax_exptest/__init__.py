"""optax_exptest: learning-rate-free training for JAX and Optax.

* `exptest`: an Optax transformation that searches the learning rate from an
  upper bound and tunes it on plateaus, by hypothesis tests on the loss
  (arXiv 2411.16975).
* `lr_upper_bound`: the starting rate, from the inputs' correlation matrix.
* `stats`: the exponential and plateau tests.
"""

from optax_exptest import datasets
from optax_exptest import stats
from optax_exptest._src.bound import lr_upper_bound
from optax_exptest._src.exptest import Decision
from optax_exptest._src.exptest import exptest
from optax_exptest._src.exptest import ExpTestState
from optax_exptest._src.exptest import Phase

__version__ = "0.1.0"

__all__ = [
    "Decision",
    "ExpTestState",
    "Phase",
    "datasets",
    "exptest",
    "lr_upper_bound",
    "stats",
]
