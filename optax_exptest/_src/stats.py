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
:func:`weighted_plateau_test`) are what the optimizer calls on its ring
buffer: a slot of weight 0 is unused, and a slot of weight ``k`` holds the
mean of ``k`` consecutive losses, whose variance is ``sigma^2 / k``; weighted
least squares with these weights is then generalised least squares, and the
degrees of freedom count slots, not losses.
"""

from typing import NamedTuple

import jax
from jax import lax
import jax.numpy as jnp
from jax.typing import ArrayLike
import numpy as np

# The rate grid of the exponential fit, in units of the window: it holds
# ``beta = b * (t_max - t_min)``, so ``exp(-beta)`` is how far the exponential
# part decays across the window. At 1e-4 the curve is a line to within 5e-5
# relative curvature (the linear model is its limit): the range reaches that
# far because on near-linear convex windows the least-squares rate is that
# small (seen on the authors' California losses), and stopping at 1e-2 left
# the fit 0.1% above SciPy's SSE there. At 1e3 the decaying part is a spike
# on the first slot of a window of up to ~1000 slots; faster is no different.
# The refinement stays inside the same range, so the tested model family is
# exactly {a > 0, beta in [1e-4, 1e3]}.
#
# Calibration: the F statistic is the best over all rates in the range, which
# inflates it, but a > 0, b > 0 makes the test one-sided in effect, and that
# wins: measured type-I errors are 0.022-0.037 at alpha = 0.05 (see
# `exponential_test`). The range hardly matters there: [1e-2, 1e3] gave the
# same rates; [1e-4, 1e2] lowered the largest (flat window, n = 120) from
# 0.037 to 0.026, at the price of missing decays that finish within a slot.
_LOG_BETA_MIN = float(np.log(1e-4))
_LOG_BETA_MAX = float(np.log(1e3))
# 64 points: log spacing 0.26, so the grid's best rate lies within 14% of the
# optimum and Levenberg-Marquardt starts inside its basin.
_GRID_SIZE = 64
# Levenberg-Marquardt converges in a handful of steps from the grid start; the
# rest is head-room for flat valleys (small rates, where a and b trade off).
_LM_ITERATIONS = 20
_LM_DAMPING_INIT = 1e-3
_LM_DAMPING_UP = 10.0
_LM_DAMPING_DOWN = 0.3
_LM_DAMPING_MIN = 1e-9
_LM_DAMPING_MAX = 1e9
# Residual sums of squares below what rounding of the data alone can produce
# carry no information. Both fits are floored at `_ROUNDING_SLACK` machine
# epsilons of max|y| per point, so that a line stored in floating point (whose
# SSE_lin is rounding noise) neither looks exponential nor has a zero standard
# error. Checked in the tests on perfect lines of many offsets and slopes.
_ROUNDING_SLACK = 16.0
_MIN_OBSERVATIONS = 4


class LinearFit(NamedTuple):
  """Weighted least-squares line ``y ~ slope * t + intercept``.

  Attributes:
    slope: The slope, in units of y per unit of t.
    intercept: The value of the line at ``t = 0``.
    sse: The weighted residual sum of squares ``sum w (y - yhat)^2``.
  """

  slope: jax.Array
  intercept: jax.Array
  sse: jax.Array


class ExponentialFit(NamedTuple):
  """Weighted least-squares fit ``y ~ amplitude * exp(-rate * t) + offset``.

  Attributes:
    amplitude: ``a >= 0``, the height of the decaying part at ``t = 0``. It is
      0 when no decreasing convex curve beats the constant fit.
    rate: ``b >= 0``, the decay rate per unit of t; 0 together with
      ``amplitude = 0`` for the constant fit.
    offset: ``c``, the asymptote (the weighted mean for the constant fit).
    sse: The weighted residual sum of squares ``sum w (y - yhat)^2``.
  """

  amplitude: jax.Array
  rate: jax.Array
  offset: jax.Array
  sse: jax.Array


class _Window(NamedTuple):
  """A window of weighted observations in normalised coordinates.

  Times are mapped to ``s in [0, 1]`` and values to ``z`` of weighted mean 0
  and weighted variance 1, through ``y = y_loc + y_scale * z`` and
  ``t = t_min + t_span * s``; unused slots have ``w = s = z = 0``.
  """

  s: jax.Array
  z: jax.Array
  w: jax.Array
  count: jax.Array  # int32: number of slots with weight > 0.
  usable: jax.Array  # bool: no non-finite value in a weighted slot.
  constant: jax.Array  # bool: every weighted y is the same number.
  t_min: jax.Array
  t_span: jax.Array
  y_loc: jax.Array
  y_scale: jax.Array
  sse_floor: jax.Array  # SSE (in z units) that rounding of y alone explains.


class _NormalisedLine(NamedTuple):
  slope: jax.Array  # per unit of s.
  z_mean: jax.Array
  s_mean: jax.Array
  s_ss: jax.Array  # sum w (s - s_mean)^2.
  sse: jax.Array


class _NormalisedExponential(NamedTuple):
  # z ~ amplitude * expm1(-beta * s) + start: `start` is the curve's value at
  # s = 0, and expm1 keeps the near-linear small-beta curves exact.
  amplitude: jax.Array
  beta: jax.Array
  start: jax.Array
  sse: jax.Array


def _working_dtype(y: jax.Array) -> jnp.dtype:
  # At least float32, and float64 when x64 is enabled: the fits subtract
  # nearly equal sums of squares, which half precision cannot do.
  default_float = jax.dtypes.canonicalize_dtype(jnp.float64)
  return jnp.promote_types(y.dtype, default_float)


def _as_vectors(
    t: ArrayLike, y: ArrayLike, weights: ArrayLike | None
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Casts the inputs to the working dtype and checks their (static) shapes."""
  y = jnp.asarray(y)
  dtype = _working_dtype(y)
  y = y.astype(dtype)
  t = jnp.asarray(t).astype(dtype)
  w = (
      jnp.ones_like(y)
      if weights is None
      else jnp.asarray(weights).astype(dtype)
  )
  if y.ndim != 1 or t.shape != y.shape or w.shape != y.shape:
    raise ValueError(
        "t, y and weights must be 1-D arrays of the same length, got shapes"
        f" t={t.shape}, y={y.shape}, weights={w.shape}; use jax.vmap for a"
        " batch of windows."
    )
  return t, y, w


def _normalise(t: jax.Array, y: jax.Array, w: jax.Array) -> _Window:
  """Maps a weighted window to ``s in [0, 1]`` and standardised ``z``."""
  used = w > 0  # NaN weights compare False: such slots are unused.
  finite = jnp.isfinite(t) & jnp.isfinite(y) & jnp.isfinite(w)
  usable = ~jnp.any(used & ~finite)
  used = used & finite
  count = jnp.sum(used, dtype=jnp.int32)
  # `where` before any arithmetic, so that garbage in unused slots (and
  # non-finite values, which make the window unusable anyway) cannot leak NaN.
  w = jnp.where(used, w, 0)
  t = jnp.where(used, t, 0)
  y = jnp.where(used, y, 0)
  w_sum = jnp.sum(w)
  w_sum = jnp.where(w_sum > 0, w_sum, 1)

  t_min = jnp.min(jnp.where(used, t, jnp.inf))
  t_max = jnp.max(jnp.where(used, t, -jnp.inf))
  t_min = jnp.where(count > 0, t_min, 0)
  t_span = jnp.where(count > 0, t_max - t_min, 0)
  t_span = jnp.where(t_span > 0, t_span, 1)
  s = jnp.where(used, (t - t_min) / t_span, 0)

  # Bring max|y| into [0.5, 1) first: squares of 1e30-scale losses overflow
  # float32. The scaling is by an exact power of two through `ldexp`, because
  # XLA turns `y / y_max` into `y * (1 / y_max)`, and on CPU the reciprocal of
  # a number above ~1e38 flushes to zero.
  _, exponent = jnp.frexp(jnp.max(jnp.abs(y)))
  y1 = jnp.ldexp(y, -exponent)
  mean = jnp.sum(w * y1) / w_sum
  dev = jnp.where(used, y1 - mean, 0)
  std = jnp.sqrt(jnp.sum(w * dev**2) / w_sum)
  std = jnp.where(std > 0, std, 1)
  z = dev / std

  constant = jnp.max(jnp.where(used, y, -jnp.inf)) == jnp.min(
      jnp.where(used, y, jnp.inf)
  )
  eps = jnp.finfo(y.dtype).eps
  sse_floor = w_sum * (_ROUNDING_SLACK * eps / std) ** 2
  return _Window(
      s=s,
      z=z,
      w=w,
      count=count,
      usable=usable,
      constant=constant,
      t_min=t_min,
      t_span=t_span,
      y_loc=jnp.ldexp(mean, exponent),
      y_scale=jnp.ldexp(std, exponent),
      sse_floor=sse_floor,
  )


def _weighted_mean(w: jax.Array, x: jax.Array) -> jax.Array:
  w_sum = jnp.sum(w, axis=-1)
  return jnp.sum(w * x, axis=-1) / jnp.where(w_sum > 0, w_sum, 1)


def _fit_line(window: _Window) -> _NormalisedLine:
  """Closed-form weighted least squares on centred data."""
  s, z, w = window.s, window.z, window.w
  used = w > 0
  s_mean = _weighted_mean(w, s)
  z_mean = _weighted_mean(w, z)
  ds = jnp.where(used, s - s_mean, 0)
  dz = jnp.where(used, z - z_mean, 0)
  s_ss = jnp.sum(w * ds**2)
  slope = jnp.sum(w * ds * dz) / jnp.where(s_ss > 0, s_ss, 1)
  # The SSE from the residuals themselves, not S_zz - slope * S_sz: the
  # difference cancels catastrophically when the line fits well.
  residuals = dz - slope * ds
  sse = jnp.sum(w * residuals**2)
  return _NormalisedLine(slope, z_mean, s_mean, s_ss, sse)


def _exponential_sse(
    window: _Window, amplitude: jax.Array, beta: jax.Array, start: jax.Array
) -> jax.Array:
  residuals = window.z - amplitude * jnp.expm1(-beta * window.s) - start
  return jnp.sum(window.w * jnp.where(window.w > 0, residuals, 0) ** 2)


def _grid_start(window: _Window) -> _NormalisedExponential:
  """Variable projection on the rate grid: best (a, c) for each beta.

  For a fixed rate the model is linear in (a, c); on centred data
  ``a = S_phi_z / S_phi_phi`` (clipped at 0) and the SSE drops by
  ``a * S_phi_z``. One (grid, slots) array holds all the bases.
  """
  s, w = window.s, window.w
  used = w > 0
  w_sum = jnp.sum(w)
  w_sum = jnp.where(w_sum > 0, w_sum, 1)
  z_mean = jnp.sum(w * window.z) / w_sum
  dz = jnp.where(used, window.z - z_mean, 0)
  s_mean = jnp.sum(w * s) / w_sum
  betas = jnp.exp(
      jnp.linspace(_LOG_BETA_MIN, _LOG_BETA_MAX, _GRID_SIZE, dtype=s.dtype)
  )
  # Each basis is shifted by its value at the mean time rather than by its
  # mean, so that one pass gives all the sums (the shift is known before the
  # pass) and the centred sums below lose no digits: the shifted basis is
  # already near zero mean.
  shift = jnp.expm1(-betas * s_mean)
  phi = jnp.expm1(-betas[:, None] * s[None, :]) - shift[:, None]
  phi = jnp.where(used, phi, 0)
  sums = phi @ jnp.stack([w, w * dz], axis=-1)
  s_p, s_pz = sums[:, 0], sums[:, 1]
  phi_mean = s_p / w_sum
  s_pp = jnp.maximum((phi * phi) @ w - s_p * phi_mean, 0)
  amplitude = jnp.where(
      (s_pz > 0) & (s_pp > 0), s_pz / jnp.where(s_pp > 0, s_pp, 1), 0
  )
  best = jnp.argmax(amplitude * s_pz)
  a = amplitude[best]
  start = z_mean - a * (phi_mean[best] + shift[best])
  beta = betas[best]
  return _NormalisedExponential(
      a, beta, start, _exponential_sse(window, a, beta, start)
  )


def _det_3x3(m: jax.Array) -> jax.Array:
  return (
      m[0, 0] * (m[1, 1] * m[2, 2] - m[1, 2] * m[2, 1])
      - m[0, 1] * (m[1, 0] * m[2, 2] - m[1, 2] * m[2, 0])
      + m[0, 2] * (m[1, 0] * m[2, 1] - m[1, 1] * m[2, 0])
  )


def _solve_3x3(matrix: jax.Array, rhs: jax.Array) -> jax.Array:
  """Cramer's rule: elementwise, so it fuses and batches under vmap.

  The damped, unit-diagonal matrices of the Levenberg-Marquardt steps are
  well enough conditioned for it; a bad step is rejected anyway.
  """
  cols = [matrix.at[:, i].set(rhs) for i in range(3)]
  return jnp.stack([_det_3x3(c) for c in cols]) / _det_3x3(matrix)


def _levenberg_marquardt(
    window: _Window, start: _NormalisedExponential
) -> _NormalisedExponential:
  """Refines (a, c, log beta) with a fixed number of damped Gauss-Newton steps.

  A step is kept only if it lowers the SSE and keeps a > 0, so the result is
  never worse than the start; log beta is clipped to the grid's range so that
  the fitted family is the one the test was calibrated on.
  """
  s, z, w = window.s, window.z, window.w
  used = w > 0
  dtype = z.dtype
  tiny = jnp.finfo(dtype).tiny

  def step(_, carry):
    # `basis` is expm1(-beta s) at `params`, carried to save an expm1 pass.
    params, sse, damping, basis = carry
    a, c, log_beta = params[0], params[1], params[2]
    beta = jnp.exp(log_beta)
    residuals = jnp.where(used, z - a * basis - c, 0)
    # d model / d(a, c, log beta).
    jac = jnp.stack(
        [basis, jnp.ones_like(s), -a * beta * s * (basis + 1)], axis=-1
    )
    jac = jnp.where(used[:, None], jac, 0)
    jtj = jac.T @ (w[:, None] * jac)
    jtr = jac.T @ (w * residuals)
    # Marquardt's scaling: solve in columns of unit norm, so that the damping
    # acts alike on all three parameters whatever their units.
    scale = jnp.sqrt(jnp.maximum(jnp.diag(jtj), tiny))
    scaled = jtj / (scale[:, None] * scale[None, :])
    delta = (
        _solve_3x3(scaled + damping * jnp.eye(3, dtype=dtype), jtr / scale)
        / scale
    )
    proposal = params + delta
    proposal = proposal.at[2].set(
        jnp.clip(proposal[2], _LOG_BETA_MIN, _LOG_BETA_MAX)
    )
    new_basis = jnp.expm1(-jnp.exp(proposal[2]) * s)
    new_residuals = jnp.where(
        used, z - proposal[0] * new_basis - proposal[1], 0
    )
    new_sse = jnp.sum(w * new_residuals**2)
    accept = (
        jnp.all(jnp.isfinite(proposal))
        & jnp.isfinite(new_sse)
        & (new_sse < sse)
        & (proposal[0] > 0)
    )
    params = jnp.where(accept, proposal, params)
    sse = jnp.where(accept, new_sse, sse)
    damping = jnp.where(
        accept,
        jnp.maximum(damping * _LM_DAMPING_DOWN, _LM_DAMPING_MIN),
        jnp.minimum(damping * _LM_DAMPING_UP, _LM_DAMPING_MAX),
    )
    basis = jnp.where(accept, new_basis, basis)
    return params, sse, damping, basis

  params = jnp.stack([start.amplitude, start.start, jnp.log(start.beta)])
  damping = jnp.asarray(_LM_DAMPING_INIT, dtype)
  basis = jnp.expm1(-start.beta * s)
  params, sse, _, _ = lax.fori_loop(
      0, _LM_ITERATIONS, step, (params, start.sse, damping, basis)
  )
  return _NormalisedExponential(params[0], jnp.exp(params[2]), params[1], sse)


def _fit_exponential(window: _Window) -> _NormalisedExponential:
  """Best decreasing convex exponential, or the constant if none beats it."""
  fit = _levenberg_marquardt(window, _grid_start(window))
  z_mean = _weighted_mean(window.w, window.z)
  dz = jnp.where(window.w > 0, window.z - z_mean, 0)
  constant_sse = jnp.sum(window.w * dz**2)
  better = (fit.amplitude > 0) & (fit.sse < constant_sse)
  zero = jnp.zeros_like(z_mean)
  return _NormalisedExponential(
      amplitude=jnp.where(better, fit.amplitude, zero),
      beta=jnp.where(better, fit.beta, zero),
      start=jnp.where(better, fit.start, z_mean),
      sse=jnp.where(better, fit.sse, constant_sse),
  )


@jax.jit
def fit_linear(
    t: ArrayLike, y: ArrayLike, weights: ArrayLike | None = None
) -> LinearFit:
  """Fits ``y ~ slope * t + intercept`` by weighted least squares.

  The closed form is evaluated on centred (and rescaled) data, and the SSE is
  summed from the residuals, so that a near-perfect fit keeps its precision.
  Slots with a weight ``<= 0`` (or NaN) are ignored, whatever they hold.

  Args:
    t: 1-D array of times.
    y: 1-D array of observations, same length.
    weights: optional 1-D array of non-negative weights (default: all 1); a
      weight multiplies the squared residual of its slot.

  Returns:
    A :class:`LinearFit` of scalar arrays in the caller's units. The SSE is
    ``inf`` when it exceeds the dtype's range (e.g. 1e30-scale data in
    float32), the parameters stay finite.

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_exptest import stats
    >>> fit = stats.fit_linear(jnp.arange(4.0), jnp.array([3.0, 2.0, 1.0, 0.0]))
    >>> print(f"{fit.slope:.2f} {fit.intercept:.2f}")
    -1.00 3.00

  References:
    `ExpTest: Automating Learning Rate Searching and Tuning with Insights from
    Linearized Neural Networks <https://arxiv.org/abs/2411.16975>`_, 2024.
  """
  window = _normalise(*_as_vectors(t, y, weights))
  line = _fit_line(window)
  slope = window.y_scale * line.slope / window.t_span
  at_mean = window.y_loc + window.y_scale * line.z_mean
  t_mean = window.t_min + window.t_span * line.s_mean
  return LinearFit(
      slope=slope,
      intercept=at_mean - slope * t_mean,
      sse=window.y_scale**2 * line.sse,
  )


@jax.jit
def fit_exponential(
    t: ArrayLike, y: ArrayLike, weights: ArrayLike | None = None
) -> ExponentialFit:
  r"""Fits a decreasing convex exponential ``y ~ a * exp(-b * t) + c``.

  Weighted least squares restricted to ``a > 0`` and ``b > 0``: growth and
  rising saturation do not fit, so that a diverging window cannot pass for an
  exponential decay. When no such curve beats the constant, the result is the
  constant fit (``a = b = 0``, ``c`` the weighted mean).

  Method, all with static shapes (jit- and vmap-safe): t is mapped to
  ``s in [0, 1]`` and y standardised (first scaled by a power of two to
  max|y| < 1, so that 1e30-scale data cannot overflow). For each rate
  ``beta = b * (t_max - t_min)`` on a log grid of 64 values in [1e-4, 1e3],
  ``a`` and ``c`` solve a linear least-squares problem in closed form
  (variable projection); the best grid point starts 20 Levenberg-Marquardt
  iterations on ``(a, c, log beta)`` with an analytic Jacobian, where a step
  is kept only if it lowers the SSE with ``a > 0``. The rate stays in the
  grid's range: a decay faster than 1e3 per window is a spike on its first
  slot, and one slower than 1e-4 is a line. On random and real loss windows
  the SSE is within about 1e-4 (float32, or the rounding level of the data)
  and 1e-8 (float64) of the best of :func:`scipy.optimize.curve_fit` from
  several starts, or below it.

  Args:
    t: 1-D array of times.
    y: 1-D array of observations, same length.
    weights: optional 1-D array of non-negative weights (default: all 1);
      slots with a weight ``<= 0`` are ignored.

  Returns:
    An :class:`ExponentialFit` of scalar arrays in the caller's units. The
    amplitude is referred to ``t = 0``, so it grows as ``exp(b * t_min)`` for
    windows that start late (it may overflow to ``inf`` there; the rate, the
    offset and the SSE do not depend on where t starts).

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_exptest import stats
    >>> t = jnp.arange(40.0)
    >>> fit = stats.fit_exponential(t, 2.0 * jnp.exp(-0.1 * t) + 0.5)
    >>> print(f"{fit.amplitude:.2f} {fit.rate:.2f} {fit.offset:.2f}")
    2.00 0.10 0.50

  References:
    `ExpTest: Automating Learning Rate Searching and Tuning with Insights from
    Linearized Neural Networks <https://arxiv.org/abs/2411.16975>`_, 2024.
  """
  window = _normalise(*_as_vectors(t, y, weights))
  fit = _fit_exponential(window)
  rate = fit.beta / window.t_span
  return ExponentialFit(
      amplitude=window.y_scale * fit.amplitude * jnp.exp(rate * window.t_min),
      rate=rate,
      offset=window.y_loc + window.y_scale * (fit.start - fit.amplitude),
      sse=window.y_scale**2 * fit.sse,
  )


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


def _judged(window: _Window, p: jax.Array, fit_ok: jax.Array) -> jax.Array:
  """`p` where the window can be judged, else 1 ("no evidence")."""
  judged = (
      window.usable
      & ~window.constant
      & (window.count >= _MIN_OBSERVATIONS)
      & fit_ok
      & ~jnp.isnan(p)
  )
  return jnp.where(judged, p, jnp.ones_like(p))


def _exponential_p_value(window: _Window) -> jax.Array:
  line = _fit_line(window)
  curve = _fit_exponential(window)
  sse_lin = jnp.maximum(line.sse, window.sse_floor)
  sse_exp = jnp.maximum(curve.sse, window.sse_floor)
  dfd = jnp.maximum(window.count - 3, 1).astype(sse_lin.dtype)
  f = (sse_lin - sse_exp) / (sse_exp / dfd)
  p = f_sf(f, jnp.ones_like(dfd), dfd)
  return _judged(window, p, sse_exp < sse_lin)


def _plateau_p_value(window: _Window) -> jax.Array:
  line = _fit_line(window)
  df = jnp.maximum(window.count - 2, 1).astype(line.sse.dtype)
  # The floor keeps the standard error positive on a perfect line (t -> -big,
  # p -> 0 for a decreasing one) without inventing precision the data lacks.
  sse = jnp.maximum(line.sse, window.sse_floor)
  stderr = jnp.sqrt(sse / df / jnp.where(line.s_ss > 0, line.s_ss, 1))
  p = t_cdf(line.slope / stderr, df)
  return _judged(window, p, line.s_ss > 0)


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
  return _exponential_p_value(_normalise(*_as_vectors(t, y, weights)))


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
  return _plateau_p_value(_normalise(*_as_vectors(t, y, weights)))


def _check_losses(losses: ArrayLike, name: str) -> jax.Array:
  losses = jnp.asarray(losses)
  if losses.ndim != 1 or losses.shape[0] < _MIN_OBSERVATIONS:
    raise ValueError(
        f"{name} takes a 1-D array of at least {_MIN_OBSERVATIONS} losses (the"
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

  Calibration (``tests/test_calibration.py``; float32, 4000 simulated windows
  each, alpha = 0.05): on lines plus Gaussian noise (sd 0.1; slopes 0, -1e-3,
  -1e-2 and -0.1 per step; n = 50 and 120) the type-I error measured
  0.022-0.037, about alpha / 2 to 3 alpha / 4: taking the best of all rates
  inflates F, but the ``a > 0``, ``b > 0`` restriction makes the test
  one-sided in effect, and wins; on rising lines it is 0. The power on
  ``2 exp(-t / 30) + 0.3`` plus noise of sd 0.05 with n = 120 is 1.000.

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
