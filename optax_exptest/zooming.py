"""Zooming search over learning rates (arXiv 2409.09783), vmapped and sharded.

* `ZoomingSearch`: the Lipschitz-bandit search, with `ask` / `tell` and a
  JSON `state_dict`; host-side numpy.
* `zoom`: runs the rounds of a search, each round's arms in one compiled
  `jax.vmap` call, sharded over a mesh, checkpointed after every round.
* Rewards in `[0, 1]` for `train_fn`: `loss_reward`, `loss_curve_reward`,
  `accuracy_reward`.
"""

from optax_exptest._src.arm_geometry import covers_unit_interval
from optax_exptest._src.checkpoint import read_checkpoint
from optax_exptest._src.checkpoint import write_checkpoint
from optax_exptest._src.rewards import accuracy_reward
from optax_exptest._src.rewards import loss_curve_reward
from optax_exptest._src.rewards import loss_reward
from optax_exptest._src.vmapped_rounds import make_round
from optax_exptest._src.vmapped_rounds import zoom
from optax_exptest._src.zooming_search import Arm
from optax_exptest._src.zooming_search import Pull
from optax_exptest._src.zooming_search import ZoomingSearch
from optax_exptest._src.zooming_variants import default_radius_scale

__all__ = (
    "Arm",
    "Pull",
    "ZoomingSearch",
    "accuracy_reward",
    "covers_unit_interval",
    "default_radius_scale",
    "loss_curve_reward",
    "loss_reward",
    "make_round",
    "read_checkpoint",
    "write_checkpoint",
    "zoom",
)
