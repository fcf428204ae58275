"""Least-squares fits of a line and of a decaying exponential to a window.

The two models of ExpTest's tests (arXiv 2411.16975): a line `y = d t + f` in
closed form, and `y = a exp(-b t) + c` with `a > 0`, `b > 0` (a decreasing,
convex curve) by variable projection on a grid of rates followed by
Levenberg-Marquardt. Both are weighted (a slot of weight `k` holds the mean
of `k` losses; weight 0 is an unused slot), run on a normalised copy of the
window (times in [0, 1], values rescaled) so that any scale fits in float32,
and use fixed iteration counts: jit-, vmap- and cond-safe.
"""

from typing import NamedTuple

import jax
from jax import lax
import jax.numpy as jnp
from jax.typing import ArrayLike
import numpy as np

# The rate grid of the exponential fit, in units of the window: it holds
# ``beta = b * (t_max - t_min)``, so ``exp(-beta)`` is how far the exponential
# part decays across the window. The range runs from a curve that is a line
# to within rounding (the linear model is its limit) to a spike on the first
# slot; the refinement stays inside it, so the tested model family is exactly
# {a > 0, beta in [1e-4, 1e3]}. Why these ends, and the calibration they give:
# docs/design.md, "Measurement notes".
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
# Both fits need residual degrees of freedom: the line 2, the exponential 3.
# The one minimum of the library: the shortest window (`window.MIN_WINDOW`).
MIN_OBSERVATIONS = 4


class LinearFit(NamedTuple):
  """Weighted least-squares line ``y ~ slope * t + intercept``.

  Attributes:
    slope: The slope, in units of y per unit of t.
    intercept: The value of the line at ``t = 0``.
    sse: The weighted residual sum of squares ``sum w (y - yhat)^2``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_exptest.stats import fit_linear
    >>> t = jnp.arange(10.0)
    >>> fit = fit_linear(t, 2 * t + 1)
    >>> round(float(fit.slope), 4), round(float(fit.intercept), 4)
    (2.0, 1.0)
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

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_exptest.stats import fit_exponential
    >>> t = jnp.arange(10.0)
    >>> fit = fit_exponential(t, 3 * jnp.exp(-0.5 * t) + 1)
    >>> [round(float(v), 3) for v in (fit.amplitude, fit.rate, fit.offset)]
    [3.0, 0.5, 1.0]
  """

  amplitude: jax.Array
  rate: jax.Array
  offset: jax.Array
  sse: jax.Array


class NormalisedSeries(NamedTuple):
  """A window's weighted observations in normalised coordinates.

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


def as_vectors(
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


def normalise(t: jax.Array, y: jax.Array, w: jax.Array) -> NormalisedSeries:
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
  return NormalisedSeries(
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


def fit_normalised_line(series: NormalisedSeries) -> _NormalisedLine:
  """Closed-form weighted least squares on centred data."""
  s, z, w = series.s, series.z, series.w
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
    series: NormalisedSeries, amplitude: jax.Array, beta: jax.Array, start: jax.Array
) -> jax.Array:
  residuals = series.z - amplitude * jnp.expm1(-beta * series.s) - start
  return jnp.sum(series.w * jnp.where(series.w > 0, residuals, 0) ** 2)


def _grid_start(series: NormalisedSeries) -> _NormalisedExponential:
  """Variable projection on the rate grid: best (a, c) for each beta.

  For a fixed rate the model is linear in (a, c); on centred data
  ``a = S_phi_z / S_phi_phi`` (clipped at 0) and the SSE drops by
  ``a * S_phi_z``. One (grid, slots) array holds all the bases.
  """
  s, w = series.s, series.w
  used = w > 0
  w_sum = jnp.sum(w)
  w_sum = jnp.where(w_sum > 0, w_sum, 1)
  z_mean = jnp.sum(w * series.z) / w_sum
  dz = jnp.where(used, series.z - z_mean, 0)
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
      a, beta, start, _exponential_sse(series, a, beta, start)
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
    series: NormalisedSeries, start: _NormalisedExponential
) -> _NormalisedExponential:
  """Refines (a, c, log beta) with a fixed number of damped Gauss-Newton steps.

  A step is kept only if it lowers the SSE and keeps a > 0, so the result is
  never worse than the start; log beta is clipped to the grid's range so that
  the fitted family is the one the test was calibrated on.
  """
  s, z, w = series.s, series.z, series.w
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


def fit_normalised_exponential(series: NormalisedSeries) -> _NormalisedExponential:
  """Best decreasing convex exponential, or the constant if none beats it."""
  fit = _levenberg_marquardt(series, _grid_start(series))
  z_mean = _weighted_mean(series.w, series.z)
  dz = jnp.where(series.w > 0, series.z - z_mean, 0)
  constant_sse = jnp.sum(series.w * dz**2)
  better = (fit.amplitude > 0) & (fit.sse < constant_sse)
  zero = jnp.zeros_like(z_mean)
  return _NormalisedExponential(
      amplitude=jnp.where(better, fit.amplitude, zero),
      beta=jnp.where(better, fit.beta, zero),
      start=jnp.where(better, fit.start, z_mean),
      sse=jnp.where(better, fit.sse, constant_sse),
  )


# The exponential fit's cost follows the slots it fits (a grid of bases and
# Levenberg-Marquardt passes over every slot), and a searching ExpTest's
# windows are mostly short: it is also compiled for the first 64 slots. Each
# size compiles one more fit (about 0.4 s), hence only two.
_SHORT_FIT = 64


def fit_sizes(capacity: int) -> tuple[int, ...]:
  """The prefix lengths the fit is compiled for: 64 (if shorter than
  `capacity`), then `capacity`."""
  return (_SHORT_FIT, capacity) if capacity > _SHORT_FIT else (capacity,)


def _prefix(series: NormalisedSeries, size: int) -> NormalisedSeries:
  return series._replace(s=series.s[:size], z=series.z[:size], w=series.w[:size])


def exponential_sse(series: NormalisedSeries) -> jax.Array:
  """The SSE of `fit_normalised_exponential`, fitted over the shortest
  compiled prefix of the slots that holds every weighted one.

  Unused slots weigh nothing, so every prefix gives the same fit; only
  the rounding of the sums differs.
  """
  sizes = fit_sizes(series.w.shape[0])
  fit_sse = lambda size: lambda w: fit_normalised_exponential(_prefix(w, size)).sse
  if len(sizes) == 1:
    return fit_sse(sizes[0])(series)
  slots = jnp.arange(1, series.w.shape[0] + 1, dtype=jnp.int32)
  extent = jnp.max(jnp.where(series.w > 0, slots, 0))
  branch = jnp.searchsorted(jnp.asarray(sizes[:-1], jnp.int32), extent)
  return lax.switch(branch, [fit_sse(size) for size in sizes], series)


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
  series = normalise(*as_vectors(t, y, weights))
  line = fit_normalised_line(series)
  slope = series.y_scale * line.slope / series.t_span
  at_mean = series.y_loc + series.y_scale * line.z_mean
  t_mean = series.t_min + series.t_span * line.s_mean
  return LinearFit(
      slope=slope,
      intercept=at_mean - slope * t_mean,
      sse=series.y_scale**2 * line.sse,
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
  series = normalise(*as_vectors(t, y, weights))
  fit = fit_normalised_exponential(series)
  rate = fit.beta / series.t_span
  return ExponentialFit(
      amplitude=series.y_scale * fit.amplitude * jnp.exp(rate * series.t_min),
      rate=rate,
      offset=series.y_loc + series.y_scale * (fit.start - fit.amplitude),
      sse=series.y_scale**2 * fit.sse,
  )
