"""Tests for the dataset loaders (IDX parser, shipped data, TFDS path)."""
import gzip
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from optax_exptest._src import datasets
from optax_exptest._src.datasets import CHECKSUMS
from optax_exptest._src.datasets import load_california_housing
from optax_exptest._src.datasets import load_mnist
from optax_exptest._src.datasets import load_tfds
from optax_exptest._src.datasets import load_tiny_shakespeare
from optax_exptest._src.datasets import read_idx
from optax_exptest._src.datasets import to_numpy
from optax_exptest._src.datasets import verify_checksums

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA_DIR = REPO / "data"

_IDX_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D,
              "f8": 0x0E}


def _idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
  """Encodes ``array`` as an IDX file (big-endian header and data)."""
  code = _IDX_CODES[array.dtype.str[1:]]
  if magic is None:
    magic = (code << 8) | array.ndim
  header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
  return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


# ----------------------------------------------------------------------------
# IDX parser.


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_read_idx_round_trips(tmp_path, dtype, compress):
  rng = np.random.default_rng(0)
  array = (rng.normal(size=(3, 4, 5)) * 50).astype(dtype)
  data = _idx_bytes(array)
  path = tmp_path / ("a.idx.gz" if compress else "a.idx")
  path.write_bytes(gzip.compress(data) if compress else data)
  for source in (path, str(path), path.read_bytes()):
    out = read_idx(source)
    assert out.dtype == np.dtype(dtype).newbyteorder("=")
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_read_idx_mnist_magic_numbers(tmp_path):
  images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
  labels = np.array([3, 7], np.uint8)
  (tmp_path / "img").write_bytes(_idx_bytes(images))
  (tmp_path / "lbl").write_bytes(gzip.compress(_idx_bytes(labels)))
  np.testing.assert_array_equal(
      read_idx(tmp_path / "img", magic=0x00000803), images)
  np.testing.assert_array_equal(
      read_idx(tmp_path / "lbl", magic=0x00000801), labels)
  with pytest.raises(ValueError, match=r"lbl.*0x00000801, expected 0x00000803"):
    read_idx(tmp_path / "lbl", magic=0x00000803)


@pytest.mark.parametrize(
    "data, match",
    [
        (b"\x00\x00", "too short"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "invalid magic"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "invalid magic"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 1), "truncated header"),
        (_idx_bytes(np.zeros((4, 3), np.uint8))[:-1], "truncated: 23 bytes"),
        (_idx_bytes(np.zeros((4,), np.float32)) + b"\x00", "trailing bytes"),
        (gzip.compress(_idx_bytes(np.zeros(100, np.uint8)), mtime=0)[:-10],
         "corrupt gzip"),
    ],
)
def test_read_idx_rejects_bad_files(tmp_path, data, match):
  path = tmp_path / "bad-idx1-ubyte"
  path.write_bytes(data)
  with pytest.raises(ValueError, match=match) as info:
    read_idx(path)
  assert str(path) in str(info.value)
  with pytest.raises(ValueError, match=match) as info:
    read_idx(data)
  assert "<bytes>" in str(info.value)


# ----------------------------------------------------------------------------
# Shipped files.


def test_shipped_files_match_their_checksums():
  assert verify_checksums(DATA_DIR) == dict(CHECKSUMS)
  assert len(CHECKSUMS) == 7


def test_verify_checksums_reports_mismatches(tmp_path):
  for rel in CHECKSUMS:
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / rel).write_bytes(b"not the data")
  with pytest.raises(ValueError, match="Checksum mismatch.*cal_housing.domain"):
    verify_checksums(tmp_path)


def test_tiny_shakespeare_loads_and_checks_its_checksum(tmp_path):
  text = load_tiny_shakespeare(DATA_DIR)
  assert len(text) == 1_115_394 and len(set(text)) == 65
  assert text.startswith("First Citizen:")
  (tmp_path / "tinyshakespeare").mkdir()
  (tmp_path / "tinyshakespeare" / "input.txt").write_text(text[:-1])
  with pytest.raises(ValueError, match="Checksum mismatch.*input.txt"):
    load_tiny_shakespeare(tmp_path)
  with pytest.raises(FileNotFoundError, match="tinyshakespeare/input.txt"):
    load_tiny_shakespeare(tmp_path / "nowhere")


@pytest.fixture(scope="module")
def mnist():
  return load_mnist(DATA_DIR)


def test_mnist_shapes_and_dtypes(mnist):
  assert mnist["train_images"].shape == (60000, 28, 28)
  assert mnist["train_labels"].shape == (60000,)
  assert mnist["test_images"].shape == (10000, 28, 28)
  assert mnist["test_labels"].shape == (10000,)
  assert all(v.dtype == np.uint8 for v in mnist.values())


def test_mnist_contents(mnist):
  np.testing.assert_array_equal(
      np.bincount(mnist["train_labels"]),
      [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
  np.testing.assert_array_equal(
      np.bincount(mnist["test_labels"]),
      [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
  assert mnist["train_images"].mean() == pytest.approx(33.318, abs=5e-4)
  assert mnist["test_images"].mean() == pytest.approx(33.791, abs=5e-4)
  assert mnist["train_images"].max() == 255


def test_mnist_data_dir_may_be_the_mnist_folder(mnist):
  again = load_mnist(DATA_DIR / "mnist")
  np.testing.assert_array_equal(again["test_labels"], mnist["test_labels"])


def test_california_housing_matches_scikit_learn_form():
  x, y, names = load_california_housing(DATA_DIR)
  assert x.shape == (20640, 8) and y.shape == (20640,)
  assert x.dtype == np.float64 and y.dtype == np.float64
  assert names == ("MedInc", "HouseAge", "AveRooms", "AveBedrms",
                   "Population", "AveOccup", "Latitude", "Longitude")
  np.testing.assert_allclose(
      x[0], [8.3252, 41, 6.984127, 1.02381, 322, 2.555556, 37.88, -122.23],
      rtol=1e-6)
  assert y[0] == pytest.approx(4.526, rel=1e-12)
  assert x[:, 0].mean() == pytest.approx(3.870671, abs=1e-6)
  assert y.mean() == pytest.approx(2.068558, abs=1e-6)
  assert np.all(np.isfinite(x))


def test_california_housing_dtype():
  x, y, _ = load_california_housing(DATA_DIR, dtype=np.float32)
  assert x.dtype == np.float32 and y.dtype == np.float32
  with pytest.raises(ValueError, match="dtype must be a floating dtype"):
    load_california_housing(DATA_DIR, dtype=np.int32)


def test_california_housing_checks_the_columns(tmp_path):
  folder = tmp_path / "california_housing"
  folder.mkdir()
  (folder / "cal_housing.data").write_text("1,2\n")
  (folder / "cal_housing.domain").write_text("a: continuous.\nb: continuous.\n")
  with pytest.raises(ValueError, match="columns .'a', 'b'., expected"):
    load_california_housing(tmp_path)


# ----------------------------------------------------------------------------
# Locating the data.


def test_default_data_dir_is_the_checkout_data_folder(monkeypatch):
  monkeypatch.delenv(datasets.DATA_ENV_VAR, raising=False)
  assert datasets.default_data_dir() == DATA_DIR
  _, y, _ = load_california_housing()
  assert y.shape == (20640,)


def test_environment_variable_sets_the_data_folder(monkeypatch, tmp_path):
  monkeypatch.setenv(datasets.DATA_ENV_VAR, str(tmp_path))
  assert datasets.default_data_dir() == tmp_path
  with pytest.raises(FileNotFoundError, match=r"\$OPTAX_EXPTEST_DATA\)"):
    load_california_housing()


def test_missing_data_gives_a_helpful_error(tmp_path):
  with pytest.raises(FileNotFoundError) as info:
    load_mnist(tmp_path / "nowhere")
  message = str(info.value)
  assert "mnist/train-images-idx3-ubyte.gz" in message
  assert str(tmp_path / "nowhere") in message
  for advice in ("data_dir=", "OPTAX_EXPTEST_DATA", "load_tfds"):
    assert advice in message


def test_missing_second_file_is_named(tmp_path):
  folder = tmp_path / "mnist"
  folder.mkdir()
  (folder / "train-images-idx3-ubyte.gz").write_bytes(b"")
  with pytest.raises(FileNotFoundError, match="mnist/train-labels-idx1"):
    load_mnist(tmp_path)


def test_no_data_folder_at_all(monkeypatch, tmp_path):
  monkeypatch.delenv(datasets.DATA_ENV_VAR, raising=False)
  monkeypatch.setattr(datasets, "default_data_dir", lambda: None)
  with pytest.raises(FileNotFoundError, match="is not set and optax_exptest is"
                     " not imported from a source checkout") as info:
    load_mnist()
  assert 'load_tfds("mnist", "train")' in str(info.value)


def _copy_out_package(site: pathlib.Path) -> pathlib.Path:
  """The package's files as a wheel installs them: `site/optax_exptest/`."""
  shutil.copytree(REPO / "optax_exptest", site / "optax_exptest",
                  ignore=shutil.ignore_patterns("__pycache__"))
  return site


_PROBE = """
import os, sys
import optax_exptest
assert "optax_exptest.datasets" not in sys.modules
assert optax_exptest.__file__.startswith(sys.argv[1]), optax_exptest.__file__
from optax_exptest import datasets
print("default:", datasets.default_data_dir())
try:
  datasets.load_mnist()
except FileNotFoundError as e:
  print("error:", e)
x, y, _ = datasets.load_california_housing(sys.argv[2] or None)
print("rows:", len(y))
"""


def _probe_installed(site, cwd, data_dir="", env_data=None):
  env = {k: v for k, v in os.environ.items() if k != datasets.DATA_ENV_VAR}
  env["PYTHONPATH"] = str(site)  # Before the editable install's path hook.
  if env_data is not None:
    env[datasets.DATA_ENV_VAR] = str(env_data)
  return subprocess.run(
      [sys.executable, "-c", _PROBE, str(site), str(data_dir)], cwd=cwd,
      env=env, capture_output=True, text=True, timeout=120,
  )


def test_installed_package_does_not_look_beside_itself(tmp_path):
  """Outside a checkout, a `data/` folder next to the package is not ours."""
  site = _copy_out_package(tmp_path / "site-packages")
  shutil.copytree(DATA_DIR / "california_housing",
                  site / "data" / "california_housing")  # Another package's.
  (site / "data" / "mnist").mkdir()
  work = tmp_path / "elsewhere"
  work.mkdir()
  out = _probe_installed(site, work)
  assert out.returncode != 0, out.stdout
  assert "default: None" in out.stdout, out.stdout + out.stderr
  assert "OPTAX_EXPTEST_DATA is not set" in out.stdout
  assert "not imported from a source checkout" in out.stdout
  assert "FileNotFoundError" in out.stderr  # California: no data either.


def test_installed_package_loads_from_the_variable_or_argument(tmp_path):
  site = _copy_out_package(tmp_path / "site-packages")
  work = tmp_path / "elsewhere"
  work.mkdir()
  out = _probe_installed(site, work, env_data=DATA_DIR)
  assert out.returncode == 0, out.stderr
  assert f"default: {DATA_DIR}" in out.stdout and "rows: 20640" in out.stdout
  assert "error:" not in out.stdout  # MNIST found too.
  out = _probe_installed(site, work, data_dir=DATA_DIR)
  assert out.returncode == 0, out.stderr
  assert "default: None" in out.stdout and "rows: 20640" in out.stdout


def test_import_does_not_load_the_datasets_module():
  code = ("import sys, optax_exptest;"
          " print(sorted(m for m in sys.modules if 'datasets' in m));"
          " optax_exptest.datasets.load_mnist;"
          " print(sorted(m for m in sys.modules if 'datasets' in m))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, timeout=120, check=True).stdout.splitlines()
  assert out == ["[]", "['optax_exptest._src.datasets', 'optax_exptest.datasets']"]


# ----------------------------------------------------------------------------
# TensorFlow Datasets.


def test_load_tfds_without_tensorflow_datasets(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
  with pytest.raises(ImportError, match=r'pip install "optax_exptest\[data\]"'):
    load_tfds("mnist", "train")


def test_load_tfds_offline_fails_fast_with_advice(monkeypatch, tmp_path):
  pytest.importorskip("tensorflow_datasets")
  monkeypatch.setattr(datasets, "_network_reachable", lambda urls, t: False)
  start = time.monotonic()
  with pytest.raises(RuntimeError) as info:
    load_tfds("mnist", "train", data_dir=tmp_path)
  assert time.monotonic() - start < 10
  message = str(info.value)
  for part in ("'mnist'", str(tmp_path), "not prepared", "unreachable",
               "tfds build mnist", "array_record"):
    assert part in message
  assert "storage.googleapis.com" in message


def test_load_tfds_no_download_fails_at_once(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  with pytest.raises(RuntimeError, match="not prepared.*download=False"):
    load_tfds("mnist", "train", data_dir=tmp_path, download=False)


def test_load_tfds_real_call_without_network_is_quick(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  if datasets._network_reachable(["https://storage.googleapis.com"], 2.0):
    pytest.skip("the network is reachable: the call would download MNIST")
  start = time.monotonic()
  with pytest.raises(RuntimeError, match="network is unreachable"):
    load_tfds("mnist", "train", data_dir=tmp_path, timeout_s=5.0)
  assert time.monotonic() - start < 10


def test_network_probe_times_out(monkeypatch):
  def hang(*args, **kwargs):
    del args, kwargs
    time.sleep(5)  # Longer than the probe waits; then fail as a timeout does.
    raise OSError("timed out")

  monkeypatch.setattr(datasets.socket, "create_connection", hang)
  start = time.monotonic()
  assert not datasets._network_reachable(["https://example.invalid/x"], 0.3)
  assert time.monotonic() - start < 2


class _FakeBuilder:
  """Records what `load_tfds` asks of a TFDS builder."""

  def __init__(self, prepared):
    self.prepared = prepared
    self.calls = []
    self.data_path = pathlib.Path("/fake/mnist/3.0.1")
    self.data_dir_root = pathlib.Path("/fake")
    self.url_infos = {"https://example.org/mnist.gz": None}

  def is_prepared(self):
    return self.prepared

  def download_and_prepare(self, **kwargs):
    self.calls.append(("download_and_prepare", kwargs))

  def as_data_source(self, split):
    self.calls.append(("as_data_source", split))
    return [{"label": 1}]


def test_load_tfds_routes_through_the_builder(monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")
  probes = []
  monkeypatch.setattr(datasets, "_network_reachable",
                      lambda urls, t: probes.append(list(urls)) or True)
  for prepared in (True, False):
    fake = _FakeBuilder(prepared)
    monkeypatch.setattr(tfds, "builder", lambda *a, fake=fake, **k: fake)
    assert load_tfds("mnist", "test") == [{"label": 1}]
    expected = [("as_data_source", "test")]
    if not prepared:
      expected.insert(
          0, ("download_and_prepare", {"file_format": "array_record"}))
    assert fake.calls == expected
  assert len(probes) == 1 and "https://example.org/mnist.gz" in probes[0]


def test_load_tfds_rejects_bad_timeout():
  with pytest.raises(ValueError, match="timeout_s=0"):
    load_tfds("mnist", "train", timeout_s=0)


class _BatchedSource:

  def __init__(self, n):
    self.n, self.requests = n, []

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    return {"image": np.full((2, 2), i, np.uint8), "label": i % 3}

  def __getitems__(self, keys):
    self.requests.append(len(keys))
    return [self[i] for i in keys]


def test_to_numpy_stacks_examples():
  source = _BatchedSource(5)
  out = to_numpy(source, batch_size=2)
  assert source.requests == [2, 2, 1]
  assert out["image"].shape == (5, 2, 2)
  np.testing.assert_array_equal(out["label"], [0, 1, 2, 0, 1])
  assert set(to_numpy(source, ["label"])) == {"label"}
  with pytest.raises(ValueError, match="empty"):
    to_numpy([])
