"""Tests for `lr_upper_bound` (ExpTest eq. 15-16, Appendix C)."""
import pathlib

import numpy as np
import pytest

from helpers import log_compilations
from optax_exptest._src.bound import lr_upper_bound
from optax_exptest._src.datasets import load_mnist

DATA_DIR = pathlib.Path(__file__).resolve().parents[1] / "data"


def _correlated(s: int, n: int, seed: int = 0) -> np.ndarray:
  """Correlated features with unequal scales and offsets, a spiked spectrum."""
  rng = np.random.default_rng(seed)
  latent = rng.normal(size=(s, 8))
  mixing = rng.normal(size=(8, n))
  x = latent @ mixing + rng.normal(size=(s, n))
  return x * rng.uniform(0.1, 10.0, size=n) + rng.uniform(-5.0, 5.0, size=n)


def _reference(x: np.ndarray, covariance: str = "correlation") -> float:
  """The bound straight from the definition, in float64 numpy."""
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  s = len(x)
  if covariance == "correlation":
    std = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(std > 0, std, np.inf)
  lam = np.linalg.eigvalsh(x.T @ x / (s - 1))[-1]
  return 2 * s / ((s - 1) * lam)


@pytest.mark.parametrize("covariance", ["correlation", "second_moment"])
def test_exact_matches_definition(covariance):
  x = _correlated(500, 40)
  np.testing.assert_allclose(
      lr_upper_bound(x, covariance=covariance, method="exact"),
      _reference(x, covariance), rtol=1e-10)


@pytest.mark.parametrize("method", ["lanczos", "power"])
@pytest.mark.parametrize("covariance", ["correlation", "second_moment"])
def test_matrix_free_agrees_with_exact(x64, method, covariance):
  del x64
  x = _correlated(2000, 300)
  exact = lr_upper_bound(x, covariance=covariance, method="exact")
  approx = lr_upper_bound(x, covariance=covariance, method=method,
                          batch_size=512)
  np.testing.assert_allclose(approx, exact, rtol=1e-2)
  if method == "lanczos":  # A Ritz value: lambda from below, eta from above.
    assert approx >= exact * (1 - 1e-5)


def test_auto_picks_matrix_free_above_exact_max_features(monkeypatch):
  from optax_exptest._src import bound  # pylint: disable=g-import-not-at-top
  x = _correlated(1000, 300, seed=1)
  calls = []
  original = bound._streamed_gram_matvec
  monkeypatch.setattr(bound, "_streamed_gram_matvec",
                      lambda *a: calls.append(a) or original(*a))
  exact = bound.lr_upper_bound(x)
  assert not calls
  auto = bound.lr_upper_bound(x, exact_max_features=100, batch_size=300)
  assert len(calls) == 1
  np.testing.assert_allclose(auto, exact, rtol=1e-2)


def _kernel_compilations(messages):
  return [m for m in messages if m.startswith("Compiling")
          and "_batch_gram_matvec" in m]


def test_matrix_free_kernel_compiles_once():
  x = _correlated(1000, 30, seed=10)  # 3 batches of 384, the last one padded.
  with log_compilations() as compiled:
    lr_upper_bound(x, method="lanczos", batch_size=384, num_iterations=8)
  assert len(_kernel_compilations(compiled)) <= 1  # 0 if cached earlier.
  with log_compilations() as compiled:
    lr_upper_bound(x + 1.0, method="power", batch_size=384, num_iterations=8)
  assert not _kernel_compilations(compiled)


def test_matrix_free_streams_a_memmap(tmp_path):
  x = _correlated(1100, 30, seed=2).astype(np.float32)
  path = tmp_path / "x.f32"
  mm = np.memmap(path, np.float32, "w+", shape=(1100, 5, 6))
  mm[:] = x.reshape(1100, 5, 6)
  mm.flush()
  mm = np.memmap(path, np.float32, "r", shape=(1100, 5, 6))
  expected = lr_upper_bound(x, method="exact")
  np.testing.assert_allclose(
      lr_upper_bound(mm, method="lanczos", batch_size=256), expected,
      rtol=1e-4)
  np.testing.assert_allclose(
      lr_upper_bound(mm, method="exact", batch_size=256), expected, rtol=1e-6)


@pytest.mark.parametrize("method", ["exact", "lanczos"])
def test_isotropic_gaussian_matches_marchenko_pastur_edge(method):
  s, n = 4000, 300
  x = np.random.default_rng(3).normal(size=(s, n))
  edge = (1 + np.sqrt(n / s)) ** 2  # Largest eigenvalue as s, n -> infinity.
  for covariance in ("correlation", "second_moment"):
    eta = lr_upper_bound(x, covariance=covariance, method=method)
    np.testing.assert_allclose(eta, 2 / edge, rtol=0.03)


def test_correlation_is_invariant_to_per_feature_affine_maps(x64):
  del x64
  x = _correlated(800, 20, seed=4)
  rng = np.random.default_rng(5)
  y = x * rng.uniform(1e-3, 1e3, size=20) + rng.uniform(-1e3, 1e3, size=20)
  for method in ("exact", "lanczos"):
    np.testing.assert_allclose(lr_upper_bound(y, method=method),
                               lr_upper_bound(x, method=method), rtol=1e-4)
  assert (lr_upper_bound(y, covariance="second_moment")
          != pytest.approx(lr_upper_bound(x, covariance="second_moment")))


def test_constant_features_count_as_zero_columns(x64):
  del x64
  x = _correlated(300, 10, seed=6)
  padded = np.concatenate(
      [x, np.full((300, 3), 0.1), np.zeros((300, 2)), np.full((300, 1), 7e9)],
      axis=1)
  expected = lr_upper_bound(x)
  for method in ("exact", "lanczos", "power"):
    eta = lr_upper_bound(padded, method=method)
    assert np.isfinite(eta)
    np.testing.assert_allclose(eta, expected, rtol=1e-3)


def test_multi_dimensional_inputs_are_flattened():
  x = _correlated(400, 24, seed=7)
  np.testing.assert_allclose(lr_upper_bound(x.reshape(400, 2, 3, 4)),
                             lr_upper_bound(x), rtol=1e-12)


def test_mse_multiplies_by_num_outputs():
  x = _correlated(300, 10, seed=8)
  base = lr_upper_bound(x, "cross_entropy")
  assert lr_upper_bound(x, "mse") == pytest.approx(base, rel=1e-12)
  assert lr_upper_bound(x, "mse", num_outputs=3) == pytest.approx(
      3 * base, rel=1e-12)
  # Appendix C: the cross-entropy bound does not depend on the classes.
  assert lr_upper_bound(x, num_outputs=10) == pytest.approx(base, rel=1e-12)


def test_returns_python_float():
  x = _correlated(100, 5)
  for method in ("exact", "lanczos"):
    eta = lr_upper_bound(x, method=method)
    assert type(eta) is float  # pylint: disable=unidiomatic-typecheck


def test_perfectly_correlated_features_give_closed_form():
  a = np.random.default_rng(9).normal(size=(100, 1))
  x = np.concatenate([a, 3.0 * a + 1.0, np.ones_like(a)], axis=1)
  # Correlation matrix [[1, 1, 0], [1, 1, 0], [0, 0, 0]]: eta = 2 / 2.
  assert lr_upper_bound(x) == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize(
    "x, kwargs, match",
    [
        (np.zeros(5), {}, "at least 2-D"),
        (np.zeros((1, 5)), {}, "at least 2 samples"),
        (np.zeros((5, 0)), {}, "no features"),
        (np.ones((5, 3)), {}, "no variance"),
        (np.zeros((5, 3)), {"covariance": "second_moment"}, "no variance"),
        (np.array([[1.0, np.nan], [2.0, 3.0]]), {}, "non-finite"),
        (np.array([[1.0, np.inf], [2.0, 3.0]]),
         {"covariance": "second_moment"}, "non-finite"),
        (np.array([[1.0, np.nan], [2.0, 3.0]]),
         {"covariance": "second_moment", "method": "lanczos"}, "non-finite"),
        (np.array([[1.0, np.inf], [2.0, 3.0]]),
         {"covariance": "second_moment", "method": "power"}, "non-finite"),
        (np.array([["a"], ["b"]]), {}, "real numbers"),
        (np.eye(3), {"loss": "hinge"}, "loss must be one of"),
        (np.eye(3), {"covariance": "cov"}, "covariance=.cov."),
        (np.eye(3), {"method": "svd"}, "method=.svd."),
        (np.eye(3), {"num_outputs": 0}, "num_outputs=0"),
        (np.eye(3), {"num_outputs": 1.5}, "num_outputs must be an integer"),
        (np.eye(3), {"batch_size": 0}, "batch_size=0"),
        (np.eye(3), {"num_iterations": 0}, "num_iterations=0"),
        (np.eye(3), {"exact_max_features": -1}, "exact_max_features=-1"),
    ],
)
def test_bad_arguments_raise_value_error(x, kwargs, match):
  kwargs = dict(kwargs)
  loss = kwargs.pop("loss", "cross_entropy")
  with pytest.raises(ValueError, match=match):
    lr_upper_bound(x, loss, **kwargs)


@pytest.fixture(scope="module")
def mnist_train_images():
  return load_mnist(DATA_DIR)["train_images"]


def test_mnist_bound_matches_the_authors(mnist_train_images):
  # The authors' notebook printed 0.04939862 (per-pixel standardised pixels).
  eta = lr_upper_bound(mnist_train_images)
  np.testing.assert_allclose(eta, 0.04939862, rtol=1e-6)
  assert eta == pytest.approx(0.0494, rel=0.01)


def test_mnist_second_moment_of_normalised_pixels(mnist_train_images):
  x = (mnist_train_images.astype(np.float32) / 255 - 0.1307) / 0.3081
  eta = lr_upper_bound(x, covariance="second_moment")
  assert eta == pytest.approx(0.0080, rel=0.01)
