"""ExpTest's policies: the rules that turn the training loss into decisions.

`exptest(..., policy=...)` takes one; the default is the paper's Algorithm 1
(`PaperPolicy`). A policy is a static, hashable value whose `decide` turns
an `Event` (the window at its end, the run's scales, a confirmed
divergence) into a `Verdict` (the decision, the phase, the rate's factor,
a return to the anchor, the next window). `docs/design.md`, "How to add a
policy", walks through writing one; the window's helpers are in `window`.
"""

from optax_exptest._src import window
from optax_exptest._src.decision import Decision
from optax_exptest._src.decision import Phase
from optax_exptest._src.decision import Verdict
from optax_exptest._src.paper_policy import PaperPolicy
from optax_exptest._src.policy import AnchorMode
from optax_exptest._src.policy import Event
from optax_exptest._src.policy import Hyperparameters
from optax_exptest._src.policy import Policy
from optax_exptest._src.probing_policy import ProbingPolicy
from optax_exptest._src.scales import Scales

__all__ = (
    "AnchorMode",
    "Decision",
    "Event",
    "Hyperparameters",
    "PaperPolicy",
    "Phase",
    "Policy",
    "ProbingPolicy",
    "Scales",
    "Verdict",
    "window",
)
