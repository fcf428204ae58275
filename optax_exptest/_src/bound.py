"""The theoretical upper bound on the learning rate (ExpTest, eq. 15-16).

Gradient descent on a linear model with the mean squared error multiplies the
distance to the optimum by ``I - eta (s - 1) / (m s) Sigma`` each step
(``Sigma`` the input covariance, ``m`` outputs, ``s`` samples), so it converges
iff ``eta < 2 m s / ((s - 1) lambda_max(Sigma))``. Cross-entropy obeys the same
bound with ``m = 1`` (the paper's Appendix C). ExpTest starts from this rate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

Loss = Literal["cross_entropy", "mse"]
Covariance = Literal["correlation", "second_moment"]
Method = Literal["auto", "exact", "lanczos", "power"]

_LOSSES = ("cross_entropy", "mse")
_COVARIANCES = ("correlation", "second_moment")
_METHODS = ("auto", "exact", "lanczos", "power")


def lr_upper_bound(
    x: Any,
    loss: Loss = "cross_entropy",
    *,
    num_outputs: int = 1,
    covariance: Covariance = "correlation",
    method: Method = "auto",
    exact_max_features: int = 2048,
    batch_size: int = 4096,
    num_iterations: int = 64,
    seed: int = 0,
) -> float:
  r"""Upper bound on the learning rate from the inputs' covariance spectrum.

  With ``s`` samples of ``n`` features (``x`` of shape ``(s, ...)`` is
  flattened to ``(s, n)``), the bound of the ExpTest paper (eq. 16 and
  Appendix C) is

  .. math::

    \eta_{\max} = c \, \frac{2 s}{(s - 1) \, \lambda_{\max}(\Sigma)},
    \qquad \Sigma = \frac{Z^\top Z}{s - 1},

  with ``c = num_outputs`` (the paper's ``m``) for ``loss="mse"`` and
  ``c = 1`` for ``loss="cross_entropy"``, whose Hessian is bounded by that of a
  one-output MSE (Appendix C), so ``num_outputs`` does not enter there.

  ``Z`` depends on ``covariance``:

  - ``"correlation"`` (default): the paper's theory assumes inputs
    standardised per feature, so ``Z = (x - mean) / std`` per feature, with
    the population standard deviation (as scikit-learn's ``StandardScaler``
    computes it). Constant features give zero columns (never NaN). Then
    ``Sigma = s / (s - 1) * R`` with ``R`` the correlation matrix, and the
    bound is exactly ``2 c / lambda_max(R)``: invariant to any per-feature
    affine rescaling of the inputs, e.g. a global normalisation of pixels.
    This reproduces all the digits the authors printed for MNIST
    (0.04939862); the sample standard deviation would give 0.04939944.
  - ``"second_moment"``: ``Z = x`` exactly as given, not centred or scaled;
    the bound for a model fed those inputs without per-feature standardisation.

  The factor ``2 s / (s - 1)`` (eq. 16, full-batch gradient descent) is used
  for every loss, as in the authors' code. Algorithm 1 writes ``c = 1`` for
  classification and ``c = m`` for regression with SGD, that is without the
  ``s / (s - 1)``; the difference is a relative ``1 / (s - 1)``. Per-feature
  means and standard deviations are computed in float64 in one streamed pass.

  The largest eigenvalue is found by ``method``:

  - ``"exact"``: ``Sigma`` is accumulated over row batches in float64 and
    ``numpy.linalg.eigvalsh`` gives its spectrum (``n x n`` memory).
  - ``"lanczos"`` (matrix-free): ``num_iterations`` Lanczos steps with full
    reorthogonalisation, on the host in float64. Each product
    ``Sigma v = Z^T (Z v) / (s - 1)`` streams over row batches of
    ``batch_size`` through one jitted JAX kernel (fixed batch shape, the last
    batch padded), in JAX's default float precision, so ``Sigma`` is never
    formed and ``x`` (a numpy array or ``np.memmap``) is never loaded whole.
    Each step is one pass over ``x``. The estimate is a Ritz value, never
    above ``lambda_max`` up to rounding, so the bound errs on the high side.
  - ``"power"`` (matrix-free): power iteration with the same products; slower
    to converge where the top eigenvalues are close.
  - ``"auto"``: ``"exact"`` if ``n <= exact_max_features``, else
    ``"lanczos"``.

  Args:
    x: training inputs, an array of shape ``(s, ...)`` with ``s >= 2``: numpy,
      ``np.memmap`` or JAX, any real dtype.
    loss: ``"cross_entropy"`` (classification) or ``"mse"`` (regression).
    num_outputs: the number of regression outputs ``m`` for ``loss="mse"``.
    covariance: ``"correlation"`` or ``"second_moment"``, see above.
    method: ``"auto"``, ``"exact"``, ``"lanczos"`` or ``"power"``.
    exact_max_features: the largest ``n`` for which ``"auto"`` is exact.
    batch_size: rows per streamed batch.
    num_iterations: Lanczos or power-iteration steps.
    seed: seed of the matrix-free methods' random start vector.

  Returns:
    The learning-rate bound ``eta_max``, a Python float.

  Raises:
    ValueError: an argument is invalid, ``x`` is not finite, or it has no
      variance (``Sigma = 0``).

  Examples:
    Two perfectly correlated features and a constant one: the correlation
    matrix is ``[[1, 1, 0], [1, 1, 0], [0, 0, 0]]``, its top eigenvalue 2.

    >>> import numpy as np
    >>> import optax_exptest
    >>> a = np.random.default_rng(0).normal(size=(100, 1))
    >>> x = np.concatenate([a, 3.0 * a + 1.0, np.ones_like(a)], axis=1)
    >>> print(f"{optax_exptest.lr_upper_bound(x):.6f}")
    1.000000
    >>> eta = optax_exptest.lr_upper_bound(x, "mse", num_outputs=10)
    >>> print(f"{eta:.6f}")
    10.000000

  References:
    `ExpTest: Automating Learning Rate Searching and Tuning with Insights from
    Linearized Neural Networks <https://arxiv.org/abs/2411.16975>`_, 2024
    (eq. 15-16, Algorithm 1, Appendix C).
  """
  x = _validate(x, loss, num_outputs, covariance, method, exact_max_features,
                batch_size, num_iterations)
  s = x.shape[0]
  n = int(np.prod(x.shape[1:], dtype=np.int64))
  if covariance == "correlation":
    shift, scale = _standardisation(x, batch_size)
  else:
    shift, scale = np.zeros(n), np.ones(n)
  if method == "auto":
    method = "exact" if n <= exact_max_features else "lanczos"
  if method == "exact":
    gram = _gram(x, shift, scale, batch_size)
    lam = float(np.linalg.eigvalsh(gram)[-1]) / (s - 1)
  else:
    matvec = _streamed_gram_matvec(x, shift, scale, batch_size)
    top_eigenvalue = (_lanczos_top_eigenvalue if method == "lanczos"
                      else _power_top_eigenvalue)
    start = np.random.default_rng(seed).standard_normal(n)
    lam = top_eigenvalue(matvec, start, num_iterations) / (s - 1)
  if not np.isfinite(lam):
    raise ValueError("x contains non-finite values (inf or NaN).")
  if lam <= 0.0:
    raise ValueError(
        f"x has no variance (largest eigenvalue of its {covariance} matrix is"
        f" {lam}): the bound is infinite."
    )
  factor = num_outputs if loss == "mse" else 1
  return float(factor * 2.0 * s / ((s - 1) * lam))


def _validate(
    x: Any,
    loss: str,
    num_outputs: int,
    covariance: str,
    method: str,
    exact_max_features: int,
    batch_size: int,
    num_iterations: int,
) -> Any:
  """Checks the arguments; returns ``x`` as an array-like with a shape."""
  if loss not in _LOSSES:
    raise ValueError(f"loss must be one of {_LOSSES}, got loss={loss!r}.")
  if covariance not in _COVARIANCES:
    raise ValueError(
        f"covariance must be one of {_COVARIANCES}, got"
        f" covariance={covariance!r}."
    )
  if method not in _METHODS:
    raise ValueError(
        f"method must be one of {_METHODS}, got method={method!r}."
    )
  for name, value, low in (("num_outputs", num_outputs, 1),
                           ("exact_max_features", exact_max_features, 0),
                           ("batch_size", batch_size, 1),
                           ("num_iterations", num_iterations, 1)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
      raise ValueError(f"{name} must be an integer, got {name}={value!r}.")
    if value < low:
      raise ValueError(f"{name} must be >= {low}, got {name}={value}.")
  if not (hasattr(x, "shape") and hasattr(x, "dtype")):
    x = np.asarray(x)
  if len(x.shape) < 2:
    raise ValueError(
        "x must have shape (samples, features...), at least 2-D, got shape"
        f" {tuple(x.shape)}."
    )
  if x.shape[0] < 2:
    raise ValueError(
        f"x must have at least 2 samples (rows), got shape {tuple(x.shape)}."
    )
  if int(np.prod(x.shape[1:])) < 1:
    raise ValueError(f"x has no features, got shape {tuple(x.shape)}.")
  if np.dtype(x.dtype).kind not in "biufV":  # "V": bfloat16 and friends.
    raise ValueError(f"x must hold real numbers, got dtype {x.dtype}.")
  return x


def _row_batches(x: Any, batch_size: int) -> Iterator[np.ndarray]:
  """Yields ``x`` in float64 row batches of shape ``(<= batch_size, n)``."""
  for start in range(0, x.shape[0], batch_size):
    batch = np.asarray(x[start:start + batch_size], dtype=np.float64)
    yield batch.reshape(batch.shape[0], -1)


def _standardisation(x: Any, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Per-feature ``(mean, 1 / std)``, population std, 0 for constant features.

  One streamed pass, merging batch means and sums of squared deviations
  (Chan et al.'s parallel update), so no large sums cancel. A feature is
  constant iff its minimum equals its maximum, which is exact where a
  variance threshold would not be.
  """
  count, mean, m2, lo, hi = 0, 0.0, 0.0, np.inf, -np.inf
  for batch in _row_batches(x, batch_size):
    if not np.all(np.isfinite(batch)):
      raise ValueError("x contains non-finite values (inf or NaN).")
    b = batch.shape[0]
    b_mean = batch.mean(axis=0)
    b_m2 = np.sum((batch - b_mean) ** 2, axis=0)
    delta = b_mean - mean
    total = count + b
    mean = mean + delta * (b / total)
    m2 = m2 + b_m2 + delta**2 * (count * b / total)
    lo = np.minimum(lo, batch.min(axis=0))
    hi = np.maximum(hi, batch.max(axis=0))
    count = total
  std = np.sqrt(m2 / count)
  varies = (hi > lo) & (std > 0)
  inv_std = np.where(varies, 1.0 / np.where(varies, std, 1.0), 0.0)
  return mean, inv_std


def _gram(
    x: Any, shift: np.ndarray, scale: np.ndarray, batch_size: int
) -> np.ndarray:
  """``Z^T Z`` in float64, ``Z = (x - shift) * scale``, accumulated by batch."""
  n = shift.shape[0]
  gram = np.zeros((n, n))
  for batch in _row_batches(x, batch_size):
    if not np.all(np.isfinite(batch)):
      raise ValueError("x contains non-finite values (inf or NaN).")
    z = (batch - shift) * scale
    gram += z.T @ z
  return gram


@jax.jit
def _batch_gram_matvec(
    xb: jax.Array, valid: jax.Array, shift: jax.Array, scale: jax.Array,
    v: jax.Array,
) -> jax.Array:
  """``Zb^T (Zb v)`` for one batch; rows where ``valid`` is False are padding.

  ``Zb = (xb - shift) * scale`` is formed inside one fusion and used on the
  left of both products (``u @ Zb``, not ``Zb.T @ u``), which XLA on CPU runs
  several times faster than with a transposed operand.
  """
  z = (xb.astype(shift.dtype) - shift) * scale
  u = jnp.where(valid, z @ v, 0.0)
  return u @ z


# Small dtypes sent to the kernel as they are (less to copy), cast there.
_RAW_DTYPES = frozenset(
    np.dtype(t) for t in (np.bool_, np.int8, np.uint8, np.int16, np.uint16))


def _streamed_gram_matvec(
    x: Any, shift: np.ndarray, scale: np.ndarray, batch_size: int
) -> Callable[[np.ndarray], np.ndarray]:
  """``v -> Z^T (Z v)`` streamed over row batches; ``Z`` is never stored.

  Every batch has the same shape (the last one is zero-padded and masked), so
  the kernel compiles once for a given shape and dtype of ``x``. Batches are
  read from ``x`` (e.g. a ``np.memmap``) one at a time; partial products are
  summed in float64 on the host.
  """
  s, n = x.shape[0], shift.shape[0]
  rows = min(batch_size, s)
  dtype = jnp.result_type(float)  # float32, or float64 under jax_enable_x64.
  send = np.dtype(x.dtype) if np.dtype(x.dtype) in _RAW_DTYPES else dtype
  shift_d, scale_d = jnp.asarray(shift, dtype), jnp.asarray(scale, dtype)

  def matvec(v: np.ndarray) -> np.ndarray:
    v_d = jnp.asarray(v, dtype)
    out = np.zeros(n)
    for start in range(0, s, rows):
      batch = np.asarray(x[start:start + rows], dtype=send).reshape(-1, n)
      b = batch.shape[0]
      if b < rows:
        batch = np.concatenate([batch, np.zeros((rows - b, n), send)])
      valid = np.arange(rows) < b
      out += np.asarray(
          _batch_gram_matvec(batch, valid, shift_d, scale_d, v_d), np.float64)
    return out

  return matvec


def _lanczos_top_eigenvalue(
    matvec: Callable[[np.ndarray], np.ndarray],
    start: np.ndarray,
    num_iterations: int,
) -> float:
  """Largest Ritz value of a symmetric PSD operator after Lanczos steps.

  Full reorthogonalisation (classical Gram-Schmidt, applied twice) keeps the
  basis orthonormal; the iteration stops early on an invariant subspace.
  """
  n = start.shape[0]
  steps = min(num_iterations, n)
  basis = np.zeros((steps, n))
  alphas, betas = [], []
  v = start / np.linalg.norm(start)
  for j in range(steps):
    basis[j] = v
    w = matvec(v)
    if not np.all(np.isfinite(w)):
      return float("nan")  # Non-finite inputs; the caller says so.
    alpha = float(v @ w)
    alphas.append(alpha)
    scale = max(float(np.linalg.norm(w)), np.finfo(np.float64).tiny)
    for _ in range(2):
      w = w - basis[:j + 1].T @ (basis[:j + 1] @ w)
    beta = float(np.linalg.norm(w))
    if j == steps - 1 or beta <= 1e-10 * scale:
      break
    betas.append(beta)
    v = w / beta
  k = len(alphas)
  tridiagonal = (np.diag(alphas) + np.diag(betas[:k - 1], 1)
                 + np.diag(betas[:k - 1], -1))
  return float(np.linalg.eigvalsh(tridiagonal)[-1])


def _power_top_eigenvalue(
    matvec: Callable[[np.ndarray], np.ndarray],
    start: np.ndarray,
    num_iterations: int,
) -> float:
  """Rayleigh quotient after power iteration on a symmetric PSD operator."""
  v = start / np.linalg.norm(start)
  lam = 0.0
  for _ in range(num_iterations):
    w = matvec(v)
    if not np.all(np.isfinite(w)):
      return float("nan")  # Non-finite inputs; the caller says so.
    lam = float(v @ w)
    norm = float(np.linalg.norm(w))
    if norm == 0.0:
      break
    v = w / norm
  return lam
