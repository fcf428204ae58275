"""A run you can look at: its loss with ExpTest's decisions marked.

`plot_run(losses, decisions, rates)` draws one run from per-step arrays (as a
`lax.scan` of training steps records them) or from per-step
`exptest_summary` dicts; `mark_decisions` adds the decisions to any axes.
Needs matplotlib (`pip install "optax_exptest[plots]"`), imported on the
first call: `import optax_exptest.plotting` alone does not load it.
"""

from optax_exptest._src.observe import DECISION_COLORS
from optax_exptest._src.plotting import DECISION_LABELS
from optax_exptest._src.plotting import mark_decisions
from optax_exptest._src.plotting import MARKED
from optax_exptest._src.plotting import plot_run

__all__ = (
    "DECISION_COLORS",
    "DECISION_LABELS",
    "MARKED",
    "mark_decisions",
    "plot_run",
)
