"""Hypothesis tests on loss windows: is the decay exponential, has it stalled?

See :func:`exponential_test` and :func:`plateau_test` (one window of losses),
their weighted forms on the optimizer's loss window (a fixed number of
block-averaged losses), the fits behind them, and the tail probabilities they
use.
"""

from optax_exptest._src.fits import ExponentialFit
from optax_exptest._src.stats import exponential_test
from optax_exptest._src.stats import f_sf
from optax_exptest._src.fits import fit_exponential
from optax_exptest._src.fits import fit_linear
from optax_exptest._src.fits import LinearFit
from optax_exptest._src.stats import plateau_test
from optax_exptest._src.stats import t_cdf
from optax_exptest._src.stats import weighted_exponential_test
from optax_exptest._src.stats import weighted_plateau_test

__all__ = (
    "ExponentialFit",
    "LinearFit",
    "exponential_test",
    "f_sf",
    "fit_exponential",
    "fit_linear",
    "plateau_test",
    "t_cdf",
    "weighted_exponential_test",
    "weighted_plateau_test",
)
