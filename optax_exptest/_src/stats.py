"""Hypothesis tests on windows of training losses (ExpTest, arXiv 2411.16975).

Two tests decide what ExpTest does with its learning rate:

- :func:`exponential_test`: does an exponential decay ``a * exp(-b * t) + c``
  (``a > 0``, ``b > 0``) fit the window significantly better than a straight
  line? An F-test on the two residual sums of squares.
- :func:`plateau_test`: is the loss still decreasing? A one-sided t-test on
  the slope of the least-squares line.

Everything here is a pure function of arrays with static shapes: fixed
iteration counts, no Python branching on traced values, no host round trip.
So the tests run under :func:`jax.jit`, :func:`jax.vmap` and inside
:func:`jax.lax.cond`, and they never return NaN: a window that cannot be
judged (too short, constant, holding a non-finite loss) gives ``p = 1``, "no
evidence". The public functions are wrapped in :func:`jax.jit` (inlined when
called from jitted code): called eagerly, the fixed-length fitting loop would
otherwise be traced and compiled again on every call.

The weighted forms (:func:`weighted_exponential_test`,
:func:`weighted_plateau_test`) are what the optimizer calls on its loss
window (``block_sums.BlockSums``, a fixed number of block-averaged slots):
a slot of weight 0 is unused, and a slot of weight ``k`` holds the mean of
``k`` consecutive losses, whose variance is ``sigma^2 / k``; weighted
least squares with these weights is then generalised least squares, and the
degrees of freedom count slots, not losses.
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from optax_exptest._src.fits import MIN_OBSERVATIONS
from optax_exptest._src.fits import NormalisedSeries
from optax_exptest._src.fits import as_vectors
from optax_exptest._src.fits import exponential_sse
from optax_exptest._src.fits import fit_normalised_line
from optax_exptest._src.fits import normalise


@jax.jit
def f_sf(f: ArrayLike, dfn: ArrayLike, dfd: ArrayLike) -> jax.Array:
  r"""Upper tail ``P(F > f)`` of the F distribution with (dfn, dfd) degrees.

  Computed as ``I_x(dfd / 2, dfn / 2)`` with ``x = dfd / (dfd + dfn * f)``,
  the tail itself rather than ``1 - cdf``: float32 ``betainc`` is accurate to
  about 1e-4 *absolute* near 1, which would wipe out a p-value of 1e-6. ``x``
  is formed without overflow for huge ``f``. ``f <= 0`` gives 1; NaN stays
  NaN, as in :func:`scipy.stats.f.sf`.

  Args:
    f: the statistic (any shape; broadcasts with the degrees of freedom).
    dfn: numerator degrees of freedom, > 0.
    dfd: denominator degrees of freedom, > 0.

  Returns:
    The p-value(s), in [0, 1].

  Examples:
    >>> from optax_exptest import stats
    >>> print(f"{stats.f_sf(4.0, 1, 30):.4f}")
    0.0546
  """
  f, dfn, dfd = _float_args(f, dfn, dfd)
  # x = 1 / (1 + r) with r = dfn * f / dfd; for r > 1 use 1/r, which cannot
  # overflow.
  big = f * dfn >= dfd
  safe_f = jnp.where(big, f, 1)
  inv_r = dfd / dfn / safe_f
  small_r = jnp.where(big, 0, f) * (dfn / dfd)
  x = jnp.where(big, inv_r / (1 + inv_r), 1 / (1 + small_r))
  x = jnp.clip(x, 0, 1)
  p = jnp.clip(jax.scipy.special.betainc(dfd / 2, dfn / 2, x), 0, 1)
  return jnp.where(f <= 0, jnp.ones_like(p), p)


@jax.jit
def t_cdf(t: ArrayLike, df: ArrayLike) -> jax.Array:
  r"""Lower tail ``P(T < t)`` of Student's t distribution with ``df`` degrees.

  The tail beyond ``|t|`` is ``I_x(df / 2, 1 / 2) / 2`` with
  ``x = df / (df + t^2)``, computed directly (never as ``1 - cdf``) and with
  ``x`` formed without overflow; the result is that tail for ``t < 0`` and
  one minus it for ``t >= 0``. NaN stays NaN, as in :func:`scipy.stats.t.cdf`.

  Args:
    t: the statistic (any shape; broadcasts with ``df``).
    df: degrees of freedom, > 0.

  Returns:
    The probabilities, in [0, 1].

  Examples:
    >>> from optax_exptest import stats
    >>> print(f"{stats.t_cdf(-2.0, 10):.4f}")
    0.0367
  """
  t, df = _float_args(t, df)
  abs_t = jnp.abs(t)
  root_df = jnp.sqrt(df)
  # q = min(|t|, sqrt(df)) / max(|t|, sqrt(df)) <= 1, so q^2 cannot overflow.
  big = abs_t >= root_df
  q = jnp.minimum(abs_t, root_df) / jnp.maximum(abs_t, root_df)
  x = jnp.where(big, q**2 / (1 + q**2), 1 / (1 + q**2))
  tail = 0.5 * jax.scipy.special.betainc(df / 2, 0.5, jnp.clip(x, 0, 1))
  p = jnp.where(t < 0, tail, 1 - tail)
  return jnp.where(jnp.isnan(t), t, jnp.clip(p, 0, 1))


def _float_args(*args: ArrayLike) -> list[jax.Array]:
  arrays = [jnp.asarray(a) for a in args]
  dtype = jnp.result_type(*arrays, jax.dtypes.canonicalize_dtype(jnp.float32))
  if not jnp.issubdtype(dtype, jnp.floating):
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
  return [a.astype(dtype) for a in arrays]


def _judged(series: NormalisedSeries, p: jax.Array, fit_ok: jax.Array) -> jax.Array:
  """`p` where the window can be judged, else 1 ("no evidence")."""
  judged = (
      series.usable
      & ~series.constant
      & (series.count >= MIN_OBSERVATIONS)
      & fit_ok
      & ~jnp.isnan(p)
  )
  return jnp.where(judged, p, jnp.ones_like(p))


def _exponential_p_value(series: NormalisedSeries) -> jax.Array:
  line = fit_normalised_line(series)
  sse_lin = jnp.maximum(line.sse, series.sse_floor)
  sse_exp = jnp.maximum(exponential_sse(series), series.sse_floor)
  dfd = jnp.maximum(series.count - 3, 1).astype(sse_lin.dtype)
  f = (sse_lin - sse_exp) / (sse_exp / dfd)
  p = f_sf(f, jnp.ones_like(dfd), dfd)
  return _judged(series, p, sse_exp < sse_lin)


def _plateau_p_value(series: NormalisedSeries) -> jax.Array:
  line = fit_normalised_line(series)
  df = jnp.maximum(series.count - 2, 1).astype(line.sse.dtype)
  # The floor keeps the standard error positive on a perfect line (t -> -big,
  # p -> 0 for a decreasing one) without inventing precision the data lacks.
  sse = jnp.maximum(line.sse, series.sse_floor)
  stderr = jnp.sqrt(sse / df / jnp.where(line.s_ss > 0, line.s_ss, 1))
  p = t_cdf(line.slope / stderr, df)
  return _judged(series, p, line.s_ss > 0)


@jax.jit
def weighted_exponential_test(
    t: ArrayLike, y: ArrayLike, weights: ArrayLike
) -> jax.Array:
  r"""F-test of a decaying exponential against a line, on weighted slots.

  With ``m`` the number of slots of positive weight,
  ``F = (SSE_lin - SSE_exp) / (SSE_exp / (m - 3))`` on (1, m - 3) degrees of
  freedom, and ``p = P(F(1, m - 3) > F)``. Fits as in :func:`fit_linear` and
  :func:`fit_exponential`. ``p = 1`` ("not exponential") when a weighted slot
  holds a non-finite value, ``m < 4``, the values are all equal, or the
  exponential does not beat the line; both SSEs are floored at what rounding
  of the data to its dtype explains, so a line stored in floating point is
  not "exponential". Runs in the dtype of ``y`` promoted to at least float32
  (float64 under x64).

  Args:
    t: 1-D array of times (e.g. the centre of each block).
    y: 1-D array of (block-mean) losses; unused slots may hold anything.
    weights: 1-D array; a slot's weight is the number of losses averaged into
      it, 0 for an unused slot.

  Returns:
    A scalar p-value in [0, 1], never NaN.

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_exptest import stats
    >>> t = jnp.arange(8.0)
    >>> y = jnp.where(t < 6, jnp.exp(-t / 2), jnp.nan)  # two unused slots
    >>> p = stats.weighted_exponential_test(t, y, (t < 6).astype(jnp.float32))
    >>> bool(p < 0.05)
    True
  """
  return _exponential_p_value(normalise(*as_vectors(t, y, weights)))


@jax.jit
def weighted_plateau_test(
    t: ArrayLike, y: ArrayLike, weights: ArrayLike
) -> jax.Array:
  r"""One-sided t-test that the weighted least-squares slope is negative.

  ``t = slope / se`` with ``se^2 = (SSE_lin / (m - 2)) / S_tt`` and
  ``S_tt = sum w (t - t_mean)^2`` over the ``m`` slots of positive weight;
  ``p = P(T(m - 2) < t)``, small when the loss still decreases. ``p = 1``
  when a weighted slot holds a non-finite value, ``m < 4``, or the values are
  all equal. A perfectly linear decreasing window gives ``p ~ 0`` (the SSE is
  floored at the rounding level of the data, so se stays positive).

  Args:
    t: 1-D array of times (e.g. the centre of each block).
    y: 1-D array of (block-mean) losses; unused slots may hold anything.
    weights: 1-D array; a slot's weight is the number of losses averaged into
      it, 0 for an unused slot.

  Returns:
    A scalar p-value in [0, 1], never NaN.

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_exptest import stats
    >>> t = jnp.arange(6.0)
    >>> p = stats.weighted_plateau_test(t, 1.0 - 0.1 * t, jnp.ones(6))
    >>> bool(p < 0.05)
    True
  """
  return _plateau_p_value(normalise(*as_vectors(t, y, weights)))


def _check_losses(losses: ArrayLike, name: str) -> jax.Array:
  losses = jnp.asarray(losses)
  if losses.ndim != 1 or losses.shape[0] < MIN_OBSERVATIONS:
    raise ValueError(
        f"{name} takes a 1-D array of at least {MIN_OBSERVATIONS} losses (the"
        f" fits need that many points), got shape {losses.shape}; use"
        " jax.vmap for a batch of windows."
    )
  return losses


@jax.jit
def exponential_test(losses: ArrayLike) -> jax.Array:
  r"""p-value of "the losses decay exponentially rather than linearly".

  Fits ``a * exp(-b * t) + c`` (``a > 0``, ``b > 0``) and a line to the losses
  at ``t = 0, 1, ..., n - 1`` and compares them with an F-test on (1, n - 3)
  degrees of freedom: ``F = (SSE_lin - SSE_exp) / (SSE_exp / (n - 3))``.
  A small p-value means exponential decay (ExpTest's learning rate is small
  enough). Non-finite losses, constant windows, and windows the exponential
  does not fit better give ``p = 1``.

  Calibration: the F statistic is the best over all rates, which inflates
  it, but the ``a > 0``, ``b > 0`` restriction makes the test one-sided in
  effect, so its type-I error on noisy lines stays below alpha
  (``tests/test_calibration.py`` checks it; the measured rates are in
  ``docs/design.md``, section 7).

  Args:
    losses: 1-D array of at least 4 losses, in order (the length is static).

  Returns:
    A scalar p-value in [0, 1], never NaN.

  Raises:
    ValueError: if ``losses`` is not 1-D or holds fewer than 4 values.

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_exptest import stats
    >>> t = jnp.arange(30.0)
    >>> p = stats.exponential_test(1.0 + jnp.exp(-t / 5))
    >>> bool(p < 0.05)
    True
    >>> print(stats.exponential_test(jnp.ones(30)))
    1.0

  References:
    `ExpTest: Automating Learning Rate Searching and Tuning with Insights from
    Linearized Neural Networks <https://arxiv.org/abs/2411.16975>`_, 2024.
  """
  losses = _check_losses(losses, "exponential_test")
  t = jnp.arange(losses.shape[0])
  return weighted_exponential_test(t, losses, jnp.ones(losses.shape))


@jax.jit
def plateau_test(losses: ArrayLike) -> jax.Array:
  r"""p-value of "the losses still decrease" (one-sided t-test on the slope).

  Fits a line to the losses at ``t = 0, 1, ..., n - 1``;
  ``t = slope / se(slope)`` on n - 2 degrees of freedom and ``p = P(T < t)``.
  A small p-value means the loss still decreases; ExpTest cuts the learning
  rate when it is not small. Non-finite losses and constant windows give
  ``p = 1``. Calibration (float32, 4000 flat-plus-noise windows, alpha =
  0.05): type-I error 0.052 (n = 50) and 0.053 (n = 120), and 0.044 on
  weighted buffers of block means (``tests/test_calibration.py``).

  Args:
    losses: 1-D array of at least 4 losses, in order (the length is static).

  Returns:
    A scalar p-value in [0, 1], never NaN.

  Raises:
    ValueError: if ``losses`` is not 1-D or holds fewer than 4 values.

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_exptest import stats
    >>> bool(stats.plateau_test(jnp.array([4.0, 3.1, 2.0, 0.9, 0.1])) < 0.05)
    True
    >>> print(stats.plateau_test(jnp.ones(10)))
    1.0

  References:
    `ExpTest: Automating Learning Rate Searching and Tuning with Insights from
    Linearized Neural Networks <https://arxiv.org/abs/2411.16975>`_, 2024.
  """
  losses = _check_losses(losses, "plateau_test")
  t = jnp.arange(losses.shape[0])
  return weighted_plateau_test(t, losses, jnp.ones(losses.shape))
