"""Tests for `lr_upper_bound_from_model`: Lanczos on curvature-vector products."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

import optax_exptest
from optax_exptest import lr_upper_bound, lr_upper_bound_from_model

from helpers import sweep


def _tol(x64):
  return 1e-8 if x64 else 2e-4


def _dense_hessian_top(loss, params):
  flat, unravel = ravel_pytree(params)
  hess = jax.jit(jax.hessian(lambda f: loss(unravel(f))))(flat)
  return np.linalg.eigvalsh(np.asarray(hess, np.float64))


def _dense_gauss_newton_top(model_fn, loss_fn, params, batches):
  """``mean_b J_b^T H_b J_b`` formed densely, its spectrum by eigvalsh."""
  flat, unravel = ravel_pytree(params)

  @jax.jit
  def gauss_newton(flat, batch):
    out = lambda f: model_fn(unravel(f), batch).reshape(-1)
    jac = jax.jacobian(out)(flat)
    outputs = model_fn(unravel(flat), batch)
    h_out = jax.hessian(
        lambda o: loss_fn(o.reshape(outputs.shape), batch))(outputs.reshape(-1))
    return jac.T @ h_out @ jac

  total = sum(np.asarray(gauss_newton(flat, b), np.float64) for b in batches)
  return np.linalg.eigvalsh(total / len(batches))


def _mlp(key, sizes):
  params = []
  for k, (a, b) in zip(jax.random.split(key, len(sizes) - 1),
                       zip(sizes[:-1], sizes[1:])):
    params.append((jax.random.normal(k, (a, b)) / np.sqrt(a), jnp.full(b, 0.1)))
  return params


def _mlp_apply(params, batch):
  h = batch[0]
  for i, (w, b) in enumerate(params):
    h = h @ w + b
    if i < len(params) - 1:
      h = jnp.tanh(h)
  return h


def _ce(logits, batch):
  return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()


def _per_batch_tops(model_fn, params, batches):
  """The parameter count and the mean of each batch's dense top eigenvalue
  (the default `average="eigenvalues"`)."""
  spectra = [_dense_gauss_newton_top(model_fn, _ce, params, [b]) for b in batches]
  return spectra[0].size, float(np.mean([s[-1] for s in spectra]))


def _classification(seed=0, s=48, n=4, k=3, num_batches=2):
  rng = np.random.default_rng(seed)
  return [(jnp.asarray(rng.normal(size=(s, n))),
           jnp.asarray(rng.integers(0, k, size=s)))
          for _ in range(num_batches)]


def test_hessian_matches_dense_eigvalsh(x64):
  batches = _classification()
  params = _mlp(jax.random.key(0), (4, 3, 3))
  loss = lambda p, b: _ce(_mlp_apply(p, b), b)
  mean_loss = lambda p: sum(loss(p, b) for b in batches) / len(batches)
  dense = _dense_hessian_top(mean_loss, params)
  assert dense[0] < 0 < dense[-1]  # A saddle: the Hessian is indefinite.
  n = dense.size  # 27 parameters: Lanczos with n steps is exact.
  eta = lr_upper_bound_from_model(loss, params, batches, num_iterations=n,
                                  average="curvature")
  assert eta.dtype == (jnp.float64 if x64 else jnp.float32)
  np.testing.assert_allclose(float(eta), 2 / dense[-1], rtol=_tol(x64))


@pytest.mark.slow  # The Gauss-Newton product against the dense matrix; the Hessian's is fast.
def test_gauss_newton_matches_dense_eigvalsh(x64):
  batches = _classification(seed=1)
  params = _mlp(jax.random.key(1), (4, 3, 3))
  dense = _dense_gauss_newton_top(_mlp_apply, _ce, params, batches)
  assert dense[0] > -1e-6 * dense[-1]  # Positive semi-definite.
  eta = lr_upper_bound_from_model(_ce, params, batches, model_fn=_mlp_apply,
                                  curvature="gauss_newton",
                                  num_iterations=dense.size,
                                  average="curvature")
  np.testing.assert_allclose(float(eta), 2 / dense[-1], rtol=_tol(x64))
  # Few iterations already find the top eigenvalue to a few percent, from
  # below (a Ritz value), so the bound errs high.
  few = lr_upper_bound_from_model(_ce, params, batches, model_fn=_mlp_apply,
                                  curvature="gauss_newton", num_iterations=8,
                                  average="curvature")
  assert 2 / dense[-1] * (1 - 1e-4) <= float(few) <= 1.1 * 2 / dense[-1]


@pytest.mark.slow  # Two Lanczos runs of each curvature.
def test_default_is_the_hessian(x64):
  # A regression started far from its targets: the residuals' term, which
  # the Gauss-Newton matrix leaves out, raises the Hessian's top eigenvalue.
  rng = np.random.default_rng(8)
  batches = [(jnp.asarray(rng.normal(size=(40, 4))),
              jnp.asarray(rng.normal(size=(40, 1)) + 5.0)) for _ in range(2)]
  params = _mlp(jax.random.key(5), (4, 3, 1))
  mse = lambda out, b: jnp.mean((out - b[1]) ** 2)
  n = ravel_pytree(params)[0].size
  per_batch = [_dense_hessian_top(lambda p, b=b: mse(_mlp_apply(p, b), b),
                                  params)[-1] for b in batches]
  eta = lr_upper_bound_from_model(mse, params, batches, model_fn=_mlp_apply,
                                  num_iterations=n)
  np.testing.assert_allclose(float(eta), 2 / np.mean(per_batch),
                             rtol=10 * _tol(x64))
  gauss_newton = lr_upper_bound_from_model(
      mse, params, batches, model_fn=_mlp_apply, curvature="gauss_newton",
      num_iterations=n)
  assert float(gauss_newton) > 1.2 * float(eta)


def test_negative_curvature_sets_no_limit():
  # Eigenvalues -10, 1, 2 in a rotated basis: power iteration would find
  # -10; the bound is 2 / 2 from the largest one.
  q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
  a = jnp.asarray(q @ np.diag([-10.0, 1.0, 2.0]) @ q.T, jnp.float32)
  loss = lambda p, batch: 0.5 * p @ a @ p * batch
  eta = lr_upper_bound_from_model(loss, jnp.ones(3), jnp.ones(1))
  np.testing.assert_allclose(float(eta), 1.0, rtol=1e-4)
  # Minus 6 p.p: eigenvalues -22, -11, -10, none positive.
  eta = lr_upper_bound_from_model(lambda p, b: loss(p, b) - 6 * p @ p,
                                  jnp.ones(3), jnp.ones(1))
  assert float(eta) == np.inf


def _standardised(s, n, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(s, n)) @ rng.normal(size=(n, n)) + 3.0
  return (x - x.mean(0)) / x.std(0)


@pytest.mark.parametrize("num_outputs", sweep([1, 3], default=[1]))
def test_linear_regression_equals_the_data_bound(x64, num_outputs):
  # 0.5 * MSE of a linear model with a bias on standardised inputs: the
  # curvature is I_m kron Z^T Z / (s m), the data bound's (eq. 15-16).
  x = _standardised(400, 8)
  y = np.random.default_rng(1).normal(size=(400, num_outputs))
  model_fn = lambda p, b: b[0] @ p["w"] + p["b"]
  half_mse = lambda out, b: 0.5 * jnp.mean((out - b[1]) ** 2)
  params = {"w": jnp.zeros((8, num_outputs)), "b": jnp.zeros(num_outputs)}
  # Two halves of the rows: the mean of their curvatures is the full one.
  batches = [(x[:200], y[:200]), (x[200:], y[200:])]
  data = lr_upper_bound(x, "mse", num_outputs=num_outputs)
  for curvature in ("gauss_newton", "hessian"):
    eta = lr_upper_bound_from_model(half_mse, params, batches,
                                    model_fn=model_fn, curvature=curvature,
                                    average="curvature")
    np.testing.assert_allclose(float(eta), data, rtol=_tol(x64))
  # Without the 0.5 the curvature doubles.
  mse = lambda out, b: jnp.mean((out - b[1]) ** 2)
  eta = lr_upper_bound_from_model(mse, params, batches, model_fn=model_fn,
                                  average="curvature")
  np.testing.assert_allclose(float(eta), data / 2, rtol=_tol(x64))


@pytest.mark.slow  # A dense matrix per batch.
def test_mean_of_each_batch_top_eigenvalue(x64):
  # The default: each batch's own lambda_max, averaged; at least the mean
  # curvature's (lambda_max is convex), so the bound is at most its bound.
  batches = _classification(seed=3, s=12, k=2, num_batches=3)
  params = _mlp(jax.random.key(6), (4, 2, 2))
  n, top = _per_batch_tops(_mlp_apply, params, batches)
  eta = lr_upper_bound_from_model(_ce, params, batches, model_fn=_mlp_apply,
                                  curvature="gauss_newton", num_iterations=n)
  np.testing.assert_allclose(float(eta), 2 / top, rtol=_tol(x64))
  mean_curvature = lr_upper_bound_from_model(
      _ce, params, batches, model_fn=_mlp_apply, curvature="gauss_newton",
      num_iterations=n, average="curvature")
  assert float(eta) < float(mean_curvature)


def test_softmax_regression_relation_to_the_data_bound(x64):
  k, x = 5, _standardised(300, 7, seed=2)
  labels = np.random.default_rng(3).integers(0, k, size=300)
  batches = [(x, labels)]
  model_fn = lambda p, b: b[0] @ p["w"] + p["b"]
  data = lr_upper_bound(x, "cross_entropy")
  zero = {"w": jnp.zeros((7, k)), "b": jnp.zeros(k)}
  # Uniform predictions: diag(p) - p p^T = (I - 1 1^T / K) / K, top 1 / K.
  eta = lr_upper_bound_from_model(_ce, zero, batches, model_fn=model_fn)
  np.testing.assert_allclose(float(eta), k * data, rtol=_tol(x64))
  # Any parameters: lambda_max(diag(p) - p p^T) <= 1/2, so eta >= 2 * data.
  rng = np.random.default_rng(4)
  for scale in (0.3, 3.0, 30.0):
    params = {"w": jnp.asarray(scale * rng.normal(size=(7, k))),
              "b": jnp.asarray(scale * rng.normal(size=k))}
    eta = lr_upper_bound_from_model(_ce, params, batches, model_fn=model_fn)
    assert float(eta) >= 2 * data * (1 - 1e-4)


class _TinyCNN(nnx.Module):

  def __init__(self, rngs):
    self.conv = nnx.Conv(1, 1, kernel_size=(3, 3), rngs=rngs)
    self.linear = nnx.Linear(3 * 3, 2, rngs=rngs)

  def __call__(self, x):
    x = nnx.avg_pool(nnx.relu(self.conv(x)), (2, 2), strides=(2, 2))
    return self.linear(x.reshape(x.shape[0], -1))


@pytest.mark.slow  # A CNN's dense Gauss-Newton matrix.
def test_flax_nnx_cnn_matches_dense_gauss_newton():
  model = _TinyCNN(nnx.Rngs(0))
  graphdef, params = nnx.split(model, nnx.Param)
  model_fn = lambda p, batch: nnx.merge(graphdef, p)(batch[0])
  rng = np.random.default_rng(0)
  batches = [(jnp.asarray(rng.normal(size=(16, 6, 6, 1)), jnp.float32),
              jnp.asarray(rng.integers(0, 2, size=16))) for _ in range(2)]
  n, top = _per_batch_tops(model_fn, params, batches)
  eta = lr_upper_bound_from_model(_ce, params, batches, model_fn=model_fn,
                                  curvature="gauss_newton", num_iterations=n)
  np.testing.assert_allclose(float(eta), 2 / top, rtol=1e-3)


def _bag_of_embeddings(params, batch):
  tokens = batch[0]  # (batch, length) integers.
  pooled = params["embed"][tokens].mean(axis=1)
  return pooled @ params["w"] + params["b"]


@pytest.mark.slow  # An embedding model's Lanczos run.
def test_integer_token_inputs():
  rng = np.random.default_rng(5)
  vocab, dim, k = 7, 2, 3
  params = {"embed": jnp.asarray(rng.normal(size=(vocab, dim))),
            "w": jnp.asarray(rng.normal(size=(dim, k)) / np.sqrt(dim)),
            "b": jnp.zeros(k)}
  batches = [(jnp.asarray(rng.integers(0, vocab, size=(20, 6)), jnp.int32),
              jnp.asarray(rng.integers(0, k, size=20))) for _ in range(3)]
  n, top = _per_batch_tops(_bag_of_embeddings, params, batches)
  eta = lr_upper_bound_from_model(_ce, params, batches,
                                  model_fn=_bag_of_embeddings,
                                  curvature="gauss_newton", num_iterations=n)
  np.testing.assert_allclose(float(eta), 2 / top, rtol=2e-4)


@pytest.mark.slow
def test_batch_forms_agree():
  batches = _classification(seed=6, num_batches=3)
  params = _mlp(jax.random.key(2), (4, 3, 3))
  run = lambda b, **kw: float(lr_upper_bound_from_model(
      _ce, params, b, model_fn=_mlp_apply, curvature="gauss_newton", **kw))
  as_list = run(batches)
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *batches)
  np.testing.assert_allclose(run(stacked), as_list, rtol=1e-5)
  np.testing.assert_allclose(run(iter(batches)), as_list, rtol=1e-5)
  np.testing.assert_allclose(run(b for b in batches), as_list, rtol=1e-5)
  # Unequal shapes (a shorter last batch): each batch counts once.
  cut = batches[:2] + [(batches[2][0][:10], batches[2][1][:10])]
  dense = _dense_gauss_newton_top(_mlp_apply, _ce, params, cut)
  np.testing.assert_allclose(
      run(cut, num_iterations=dense.size, average="curvature"),
      2 / dense[-1], rtol=2e-4)


@pytest.mark.slow
def test_jit_and_vmap():
  batches = _classification(seed=7)
  params = _mlp(jax.random.key(3), (4, 3, 3))
  bound = lambda p, b, seed: lr_upper_bound_from_model(
      _ce, p, b, model_fn=_mlp_apply, seed=seed)
  eager = float(bound(params, batches, 0))
  jitted = jax.jit(bound)(params, batches, jnp.int32(0))
  np.testing.assert_allclose(float(jitted), eager, rtol=1e-5)
  # One bound per initialisation, vmapped over parameter seeds.
  keys = jax.random.split(jax.random.key(4), 3)
  many = jax.vmap(lambda k: bound(_mlp(k, (4, 3, 3)), batches, 0))(keys)
  singles = [float(bound(_mlp(k, (4, 3, 3)), batches, 0)) for k in keys]
  np.testing.assert_allclose(np.asarray(many), singles, rtol=1e-4)
  # A random key as seed, and under jit a non-finite loss gives nan.
  assert np.isfinite(float(bound(params, batches, jax.random.key(1))))
  nan_batches = [(b[0] * jnp.nan, b[1]) for b in batches]
  assert np.isnan(float(jax.jit(bound)(params, nan_batches, jnp.int32(0))))


def test_start_rate_for_exptest():
  # The bound is a JAX scalar that ExpTest takes as its starting rate.
  batches = _classification(seed=8)
  params = _mlp(jax.random.key(5), (4, 3, 3))
  eta = lr_upper_bound_from_model(_ce, params, batches, model_fn=_mlp_apply)
  state = optax_exptest.exptest(eta).init(params)
  np.testing.assert_allclose(
      optax_exptest.exptest_summary(state)["learning_rate"], float(eta),
      rtol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(curvature="fisher"), "curvature must be one of"),
    (dict(average="median"), "average must be one of"),
    (dict(curvature="gauss_newton", model_fn=None), "needs model_fn"),
    (dict(num_iterations=0), "num_iterations must be >= 1"),
    (dict(num_iterations=2.5), "num_iterations must be an integer"),
    (dict(seed="zero"), "seed must be"),
    (dict(model_fn="model"), "model_fn must be callable"),
    (dict(loss_fn=None), "loss_fn must be callable"),
    (dict(batches=[]), "batches is empty"),
    (dict(batches=(jnp.ones((2, 3)), jnp.ones(3))), "common leading"),
    (dict(params={"w": jnp.ones(3, jnp.int32)}), "floating arrays"),
    (dict(batches=[(jnp.full((4, 4), jnp.inf), jnp.zeros(4, jnp.int32))]),
     "not finite"),
])
def test_invalid_arguments(kwargs, match):
  args = dict(loss_fn=_ce, params=_mlp(jax.random.key(6), (4, 3)),
              batches=_classification(num_batches=1), model_fn=_mlp_apply)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    lr_upper_bound_from_model(args.pop("loss_fn"), args.pop("params"),
                              args.pop("batches"), **args)
