"""A learning-rate bound from the model's own curvature (any model, any input).

Gradient descent on a loss whose Hessian at the parameters is ``H`` is
linearly stable iff ``eta < 2 / lambda_max(H)``. `lr_upper_bound` gets
``lambda_max`` from the inputs' covariance, which is exact for a linear model
on a standardised feature table; here it comes from Lanczos iterations on
matrix-free curvature-vector products of the model's loss at its initial
parameters, so it needs no feature table: CNNs, token embeddings, anything
``jax.linearize`` can differentiate.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

Curvature = Literal["gauss_newton", "hessian"]
_CURVATURES = ("gauss_newton", "hessian")
Average = Literal["eigenvalues", "curvature"]
_AVERAGES = ("eigenvalues", "curvature")


def lr_upper_bound_from_model(
    loss_fn: Callable[..., jax.Array],
    params: Any,
    batches: Any,
    *,
    model_fn: Callable[[Any, Any], Any] | None = None,
    curvature: Curvature = "hessian",
    average: Average = "eigenvalues",
    num_iterations: int = 8,
    seed: int | jax.Array = 0,
) -> jax.Array:
  r"""Upper bound ``2 / lambda_max`` on the learning rate from the model.

  ``lambda_max`` is the largest eigenvalue of the curvature of the loss at
  ``params``, found by ``num_iterations`` Lanczos steps with full
  reorthogonalisation on curvature-vector products; no matrix is formed.
  Gradient descent on the quadratic model of the loss at ``params`` converges
  iff ``learning_rate < 2 / lambda_max``: this is the bound.

  ``average`` says how the ``batches`` enter:

  - ``"eigenvalues"`` (the default): the mean over the batches of each
    batch's own ``lambda_max``. A mini-batch step is a gradient step on
    one batch's loss, stable on its quadratic model iff
    ``learning_rate < 2 / lambda_max(batch)``; pass batches of the training
    batch size and the bound is for that batch size (smaller batches have
    larger top eigenvalues: ``lambda_max`` is convex, so this mean is at
    least the mean curvature's). For full-batch training pass the one
    batch.
  - ``"curvature"``: ``lambda_max`` of the mean curvature over the batches,
    gradient descent's bound on the loss of all of them together.

  ``curvature`` chooses the matrix:

  - ``"hessian"`` (the default): the Hessian of ``loss_fn(params, batch)``,
    or with ``model_fn`` of ``loss_fn(model_fn(params, batch), batch)``:
    the matrix whose top eigenvalue sets gradient descent's stability. It
    may have negative eigenvalues away from a minimum; Lanczos finds the
    largest one, not the largest in magnitude (which power iteration
    would), and negative curvature sets no limit on the rate. Each product
    is a forward-over-reverse pass (one to a few training steps' cost;
    measured in ``docs/design.md``, section 5).
  - ``"gauss_newton"`` (needs ``model_fn``): the generalised Gauss-Newton
    matrix ``G = J^T H_out J``, with ``J`` the Jacobian of
    ``outputs = model_fn(params, batch)`` and ``H_out`` the Hessian of
    ``loss_fn(outputs, batch)`` in the outputs. It is positive
    semi-definite for a loss convex in the outputs (cross-entropy on
    logits, squared error), whatever the model, equals the Hessian where
    the model is linear in its parameters, and its products are cheaper
    (one linearised forward and one transposed pass). It leaves out the
    Hessian's term in the residuals, which is large where the initial
    predictions are far from the targets (a regression started far from
    its targets), so there it gives a larger bound than the Hessian's; on
    classifiers the two nearly agree (``docs/design.md``, section 5).

  With ``model_fn``, ``loss_fn(outputs, batch)`` is the loss of the outputs;
  without it, ``loss_fn(params, batch)`` is the whole loss. Either returns a
  scalar, the mean over the batch's examples as training uses it.

  Assumptions: the rate is for plain gradient descent (``optax.sgd``); other
  update rules rescale it (momentum ``beta`` stays stable up to
  ``2 (1 + beta) / lambda_max``; Adam's bound is on its preconditioned
  curvature, not this one). The curvature is taken at ``params`` only:
  training can sharpen it later (deep networks), or flatten it (logistic
  regression as predictions sharpen), and it is a *stability* bound: the
  rate that trains best is usually below it, and deep networks can train
  above it (a CNN's large-rate, "catapult" phase), so it is a starting rate
  to search down from, not the answer (measured against grids in
  ``benchmarks/RESULTS.md``, "The model-based bound against the best grid
  rate"). Lanczos' estimate of ``lambda_max`` is
  a Ritz value, never above the true one up to rounding, so with too few
  iterations the bound errs high.

  Relations to `lr_upper_bound` (``Z`` the per-feature standardised inputs,
  ``eta_data = lr_upper_bound(x, loss)``, a linear model with a bias):

  - Squared error ``0.5 * mean((x @ w + b - y) ** 2)`` over ``s`` rows and
    ``m`` outputs: the curvature is ``I_m kron Z^T Z / (s m)``, so the two
    bounds coincide, ``lr_upper_bound_from_model(...) == eta_data`` with
    ``num_outputs=m``. Without the 0.5 the curvature doubles and the bound
    halves.
  - Softmax regression over ``K`` classes with mean cross-entropy: the
    Hessian (the Gauss-Newton matrix, the model being linear) is
    ``mean_i (z_i z_i^T) kron (diag(p_i) - p_i p_i^T)``, and
    ``lambda_max(diag(p) - p p^T) <= 1 / 2``, so the model bound is at least
    ``2 * eta_data`` for any parameters, and exactly ``K * eta_data`` where
    every prediction is uniform (zero weights and biases).
    `lr_upper_bound`'s cross-entropy case is the worst case over
    parameters, times another factor 2.

  The computation is pure JAX (``jax.linearize``, the Lanczos steps
  unrolled, ``jnp.linalg.eigvalsh`` of the small tridiagonal matrix), so it runs under
  ``jax.jit`` and ``jax.vmap``. Its cost is ``num_iterations`` curvature
  products per batch, after one linearisation per batch; with
  ``average="eigenvalues"`` the batches run one after another through one
  compiled program, so the cost grows linearly with their number and one
  batch's activations are in memory at a time. One batch of the training
  batch size is enough for a starting rate: between batches ``lambda_max``
  varies far less than the bound's distance from the best rate
  (``docs/design.md``, section 5); each further batch averages that spread
  down at the same cost again.

  With Flax nnx, split the model and merge it in ``model_fn``::

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    model_fn = lambda p, batch: nnx.merge(graphdef, p, rest)(batch[0])

  Args:
    loss_fn: ``loss_fn(outputs, batch)`` with ``model_fn``, else
      ``loss_fn(params, batch)``; a scalar, mean over the batch.
    params: the parameters (any pytree of floating arrays), usually the
      initial ones.
    batches: the batches to average the curvature over: a ``list`` (or an
      iterator) of batches, each a pytree as ``loss_fn`` or ``model_fn``
      takes it; or one pytree of batches stacked along a new leading axis
      (as ``jax.lax.scan`` takes them). A single batch is ``[batch]``.
    model_fn: ``model_fn(params, batch)``, the model's outputs (e.g.
      logits) on the batch; needed for ``curvature="gauss_newton"``.
    curvature: ``"hessian"`` (the default) or ``"gauss_newton"``, above.
    average: ``"eigenvalues"`` or ``"curvature"``, above.
    num_iterations: Lanczos steps (curvature products per batch). The
      default 8 is enough where the top eigenvalue stands apart, as it does
      in the benchmarks' models (``docs/design.md``, section 5); too few
      steps make the bound err high. The steps are unrolled in the compiled
      program, so its compilation time grows with them.
    seed: an int or a ``jax.random`` key, for the random start vector.

  Returns:
    The bound ``2 / lambda_max``, a float JAX scalar (``inf`` if no
    eigenvalue found is positive, ``nan`` under ``jax.jit`` if the curvature
    is not finite).

  Raises:
    ValueError: an argument is invalid, or (outside ``jax.jit``) the
      curvature is not finite.

  Examples:
    Squared error of a linear model on standardised features: the model's
    bound is `lr_upper_bound`'s.

    >>> import jax, jax.numpy as jnp, numpy as np
    >>> import optax_exptest
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(256, 5)) @ rng.normal(size=(5, 5))
    >>> x = (x - x.mean(0)) / x.std(0)
    >>> y = rng.normal(size=256)
    >>> model_fn = lambda p, batch: batch[0] @ p["w"] + p["b"]
    >>> loss_fn = lambda out, batch: 0.5 * jnp.mean((out - batch[1]) ** 2)
    >>> params = {"w": jnp.zeros(5), "b": jnp.zeros(())}
    >>> eta = optax_exptest.lr_upper_bound_from_model(
    ...     loss_fn, params, [(x, y)], model_fn=model_fn)
    >>> data = optax_exptest.lr_upper_bound(x, "mse")
    >>> print(f"{float(eta):.4f} {data:.4f}")
    0.6736 0.6736
    >>> bool(abs(float(eta) / data - 1) < 1e-4)
    True

    The same loss as one function of the parameters, by its Hessian:

    >>> loss = lambda p, batch: loss_fn(model_fn(p, batch), batch)
    >>> eta_h = optax_exptest.lr_upper_bound_from_model(loss, params, [(x, y)])
    >>> bool(abs(float(eta_h) / data - 1) < 1e-4)
    True

  References:
    `ExpTest: Automating Learning Rate Searching and Tuning with Insights from
    Linearized Neural Networks <https://arxiv.org/abs/2411.16975>`_, 2024
    (eq. 15-16; a bound for deep networks is its future work).

    Schraudolph, `Fast Curvature Matrix-Vector Products for Second-Order
    Gradient Descent <https://doi.org/10.1162/08997660260028683>`_, 2002
    (Gauss-Newton-vector products).

    Cohen et al., `Gradient Descent on Neural Networks Typically Occurs at
    the Edge of Stability <https://arxiv.org/abs/2103.00065>`_, 2021 (the
    sharpness ``lambda_max`` and the ``2 / eta`` threshold during training).
  """
  _validate(loss_fn, model_fn, curvature, average, num_iterations)
  groups, num_batches = _batch_groups(batches)
  _check_params(params)
  if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
    key = jax.random.key(int(seed))
  elif isinstance(seed, jax.Array) and (
      jnp.issubdtype(seed.dtype, jax.dtypes.prng_key) or seed.shape == (2,)):
    key = seed
  elif (isinstance(seed, jax.Array) and seed.shape == ()
        and jnp.issubdtype(seed.dtype, jnp.integer)):
    key = jax.random.key(seed)  # A traced int seed, under jax.jit.
  else:
    raise ValueError(
        f"seed must be an int or a jax.random key, got seed={seed!r}.")
  lam = _top_eigenvalue(loss_fn, model_fn, curvature, average,
                        num_iterations, params, groups, num_batches, key)
  try:
    finite = bool(np.isfinite(float(lam)))
  except (jax.errors.ConcretizationTypeError,
          jax.errors.TracerArrayConversionError):
    finite = True  # Traced (under jit or vmap): nan passes through.
  if not finite:
    raise ValueError(
        "The curvature is not finite (inf or NaN): check that the loss is"
        " finite at params on every batch.")
  # No positive curvature: no limit (inf); nan stays nan.
  return jnp.where(lam <= 0, jnp.inf, 2.0 / lam)


def _validate(loss_fn, model_fn, curvature, average, num_iterations) -> None:
  """Checks the arguments."""
  if not callable(loss_fn):
    raise ValueError(f"loss_fn must be callable, got loss_fn={loss_fn!r}.")
  if model_fn is not None and not callable(model_fn):
    raise ValueError(
        f"model_fn must be callable or None, got model_fn={model_fn!r}.")
  if curvature not in _CURVATURES:
    raise ValueError(
        f"curvature must be one of {_CURVATURES}, got curvature={curvature!r}.")
  if curvature == "gauss_newton" and model_fn is None:
    raise ValueError(
        "curvature='gauss_newton' needs model_fn (params, batch) -> outputs,"
        " with loss_fn(outputs, batch); without model_fn, use"
        " curvature='hessian' and loss_fn(params, batch).")
  if average not in _AVERAGES:
    raise ValueError(
        f"average must be one of {_AVERAGES}, got average={average!r}.")
  if (isinstance(num_iterations, bool)
      or not isinstance(num_iterations, (int, np.integer))):
    raise ValueError(
        f"num_iterations must be an integer, got num_iterations={num_iterations!r}.")
  if num_iterations < 1:
    raise ValueError(
        f"num_iterations must be >= 1, got num_iterations={num_iterations}.")


def _check_params(params: Any) -> None:
  leaves = jax.tree.leaves(params)
  if not leaves:
    raise ValueError("params has no arrays.")
  for leaf in leaves:
    if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
      raise ValueError(
          "params must hold floating arrays only, got a leaf of dtype"
          f" {jnp.result_type(leaf)}; keep integer state out of params.")


def _signature(batch: Any) -> tuple:
  leaves, treedef = jax.tree.flatten(batch)
  return treedef, tuple((jnp.shape(x), jnp.result_type(x)) for x in leaves)


def _batch_groups(batches: Any) -> tuple[list[Any], int]:
  """The batches as stacked groups (leading axis: batch), and their count.

  A list of batches of one shape becomes one stacked group (one vmapped
  product for ``average="curvature"``; ``"eigenvalues"`` takes its batches
  one at a time); batches of different shapes (e.g. a shorter last one)
  stay separate groups of one.
  """
  # Only a list or an iterator is a sequence of batches: a tuple (x, y) is
  # one pytree, as in jax.lax.scan.
  if isinstance(batches, (list, Iterator)):
    batch_list = list(batches)
    if not batch_list:
      raise ValueError("batches is empty: pass at least one batch.")
    signatures = {_signature(b) for b in batch_list}
    if len(signatures) == 1:
      stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *batch_list)
      return [stacked], len(batch_list)
    groups = [jax.tree.map(lambda x: jnp.asarray(x)[None], b)
              for b in batch_list]
    return groups, len(batch_list)
  leaves = jax.tree.leaves(batches)
  if not leaves:
    raise ValueError(f"batches has no arrays, got batches={batches!r}.")
  sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in leaves}
  if None in sizes or len(sizes) != 1:
    raise ValueError(
        "batches stacked as one pytree need a common leading (batch) axis on"
        f" every leaf, got leading sizes {sorted(map(str, sizes))}; pass a"
        " list of batches instead.")
  count = sizes.pop()
  if count < 1:
    raise ValueError("batches is empty: pass at least one batch.")
  return [batches], count


def _top_eigenvalue(loss_fn, model_fn, curvature, average, num_iterations,
                    params, groups, num_batches, key):
  if average == "curvature":
    return _top_eigenvalue_jit(loss_fn, model_fn, curvature, num_iterations,
                               num_batches, params, groups, key)
  # One Lanczos run per batch, one after another through the same compiled
  # program. Vmapping the runs over the batches would batch the Lanczos
  # vectors, so a convolution's kernel tangent too: its products become
  # grouped convolutions, far slower (docs/design.md, section 5).
  total = 0.0
  for group in groups:
    for i in range(len(jax.tree.leaves(group)[0])):
      one = jax.tree.map(lambda x, i=i: x[i:i + 1], group)
      total = total + _top_eigenvalue_jit(loss_fn, model_fn, curvature,
                                          num_iterations, 1, params, [one], key)
  return total / num_batches


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _top_eigenvalue_jit(loss_fn, model_fn, curvature, num_iterations,
                        num_batches, params, groups, key):
  """`lambda_max` of the mean curvature over the batch groups."""
  flat, unravel = ravel_pytree(params)
  start = jax.random.normal(key, flat.shape, flat.dtype)
  return _lanczos_top_eigenvalue(
      _curvature_product(loss_fn, model_fn, curvature, unravel, flat, groups,
                         num_batches),
      start, num_iterations)


def _curvature_product(loss_fn, model_fn, curvature, unravel, flat, groups,
                       num_batches):
  """`v -> C v`, `C` the curvature of the mean loss over the batch groups."""
  per_batch = lambda fn: jax.vmap(fn, in_axes=(None, 0))
  if curvature == "hessian":

    if model_fn is None:
      loss = loss_fn
    else:
      loss = lambda p, batch: loss_fn(model_fn(p, batch), batch)

    def mean_loss(flat_params):
      p = unravel(flat_params)
      return sum(jnp.sum(per_batch(loss)(p, g)) for g in groups) / num_batches

    # Linearised once: each product reuses the stored forward and backward.
    _, matvec = jax.linearize(jax.grad(mean_loss), flat)
    return matvec

  def outputs(flat_params):
    p = unravel(flat_params)
    return [per_batch(model_fn)(p, g) for g in groups]

  def mean_output_loss(outs):
    return sum(jnp.sum(jax.vmap(loss_fn)(o, g))
               for o, g in zip(outs, groups)) / num_batches

  outs, jvp = jax.linearize(outputs, flat)
  vjp = jax.linear_transpose(jvp, flat)
  _, loss_hvp = jax.linearize(jax.grad(mean_output_loss), outs)
  return lambda v: vjp(loss_hvp(jvp(v)))[0]


def _lanczos_top_eigenvalue(matvec, start, num_iterations):
  """Largest Ritz value of a symmetric operator after Lanczos steps.

  Full reorthogonalisation (classical Gram-Schmidt, twice) against all basis
  vectors kept so far: in float32 the plain three-term recurrence loses
  orthogonality within a few steps and repeats the top eigenvalue. On an
  invariant subspace (``beta`` at rounding level) the next vector is zero,
  which only adds zero Ritz values.
  """
  n = start.shape[0]
  steps = min(num_iterations, n)
  dtype = start.dtype
  basis = jnp.zeros((steps + 1, n), dtype).at[0].set(
      start / jnp.linalg.norm(start))
  eps = jnp.finfo(dtype).eps

  def body(j, carry):
    basis, alphas, betas = carry
    v = basis[j]
    w = matvec(v)
    alpha = jnp.vdot(v, w)
    scale = jnp.linalg.norm(w)
    for _ in range(2):
      w = w - basis.T @ (basis @ w)
    beta = jnp.linalg.norm(w)
    keep = beta > 100 * eps * scale
    beta = jnp.where(keep, beta, 0.0)
    v_next = jnp.where(keep, w / jnp.where(keep, beta, 1.0), 0.0)
    return (basis.at[j + 1].set(v_next), alphas.at[j].set(alpha),
            betas.at[j].set(beta))

  carry = (basis, jnp.zeros(steps, dtype), jnp.zeros(steps, dtype))
  # Unrolled: XLA:CPU runs convolutions inside a while loop's body tens of
  # times slower than outside (`docs/design.md`, section 7); a few unrolled
  # products compile in seconds.
  for j in range(steps):
    carry = body(j, carry)
  _, alphas, betas = carry
  off = betas[:steps - 1]
  tridiagonal = jnp.diag(alphas) + jnp.diag(off, 1) + jnp.diag(off, -1)
  return jnp.linalg.eigvalsh(tridiagonal)[-1]
