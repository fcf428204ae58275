"""Dataset loaders: the repository's ``data/`` files and TensorFlow Datasets.

Only numpy is needed to read the repository's data (MNIST as IDX files,
California housing as StatLib text). The wheel does not contain the data: the
loaders take it from ``data_dir=``, else ``$OPTAX_EXPTEST_DATA``, else the
``data/`` folder of the source checkout the package is imported from (see
:func:`default_data_dir`). ``tensorflow_datasets`` is imported lazily, inside
:func:`load_tfds`, and only for datasets this repository does not ship.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pathlib
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

PathLike = str | os.PathLike[str]

#: Environment variable naming the data folder (the one holding ``mnist/``).
DATA_ENV_VAR = "OPTAX_EXPTEST_DATA"

#: sha256 of the shipped raw files, by path relative to the data folder.
CHECKSUMS: Mapping[str, str] = {
    "mnist/train-images-idx3-ubyte.gz": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
    ),
    "mnist/train-labels-idx1-ubyte.gz": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
    ),
    "mnist/t10k-images-idx3-ubyte.gz": (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
    ),
    "mnist/t10k-labels-idx1-ubyte.gz": (
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
    ),
    "california_housing/cal_housing.data": (
        "a2b44dcc7e1c9091b43c4f458b25cbd1f7e8068d08edd26bc4703108d3fa6214"
    ),
    "california_housing/cal_housing.domain": (
        "77bbf1a52da62d3089a9a491fabfb44a605e2f97d3096cac2afb5ea9c2f648b0"
    ),
    "tinyshakespeare/input.txt": (
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    ),
}

#: Feature names of scikit-learn's ``fetch_california_housing``, in order.
CALIFORNIA_FEATURE_NAMES: tuple[str, ...] = (
    "MedInc", "HouseAge", "AveRooms", "AveBedrms",
    "Population", "AveOccup", "Latitude", "Longitude",
)

# Column order of StatLib's `cal_housing.data` (as `cal_housing.domain` lists).
_CAL_HOUSING_COLUMNS = (
    "longitude", "latitude", "housingMedianAge", "totalRooms",
    "totalBedrooms", "population", "households", "medianIncome",
    "medianHouseValue",
)

_MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", 0x00000803),
    "train_labels": ("train-labels-idx1-ubyte.gz", 0x00000801),
    "test_images": ("t10k-images-idx3-ubyte.gz", 0x00000803),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", 0x00000801),
}

# IDX type codes (third magic byte); multi-byte types are big-endian.
_IDX_DTYPES: Mapping[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
_TFDS_GCS_HOST = "storage.googleapis.com"  # TFDS's prepared-dataset mirror.


# ----------------------------------------------------------------------------
# IDX files.


def read_idx(
    source: PathLike | bytes, *, magic: int | None = None
) -> np.ndarray:
  """Reads an IDX file (the format of the MNIST distribution).

  An IDX file is a big-endian header followed by the raw array: two zero bytes,
  a type code (``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16, ``0x0C`` int32,
  ``0x0D`` float32, ``0x0E`` float64), the number of dimensions ``d``, then
  ``d`` big-endian uint32 sizes. MNIST images have magic ``0x00000803``
  (uint8, 3 dims), labels ``0x00000801`` (uint8, 1 dim). Gzip-compressed input
  is recognised by its content, not its name.

  Args:
    source: a path to a raw or gzip-compressed IDX file, or its bytes.
    magic: if given, the 32-bit magic number the file must start with.

  Returns:
    The array, in native byte order, with the shape the header declares.

  Raises:
    ValueError: the content is not a valid IDX file (bad magic, unknown type,
      wrong length, corrupt gzip), or its magic is not ``magic``. The message
      names the file.

  Examples:
    >>> import struct, numpy as np
    >>> from optax_exptest.datasets import read_idx
    >>> raw = struct.pack(">4I", 0x00000803, 1, 1, 2) + bytes([7, 9])
    >>> read_idx(raw, magic=0x803)
    array([[[7, 9]]], dtype=uint8)
  """
  if isinstance(source, (bytes, bytearray, memoryview)):
    name, data = "<bytes>", bytes(source)
  else:
    name = os.fspath(source)
    with open(name, "rb") as f:
      data = f.read()
  if data[:2] == _GZIP_MAGIC:
    try:
      data = gzip.decompress(data)
    except (OSError, EOFError) as e:
      raise ValueError(f"IDX file {name}: corrupt gzip data ({e}).") from e
  return _parse_idx(data, name=name, magic=magic)


def _parse_idx(data: bytes, *, name: str, magic: int | None) -> np.ndarray:
  """Parses decompressed IDX bytes; see `read_idx`."""
  if len(data) < 4:
    raise ValueError(
        f"IDX file {name}: {len(data)} bytes, too short for the 4-byte magic."
    )
  file_magic = int.from_bytes(data[:4], "big")
  if magic is not None and file_magic != magic:
    raise ValueError(
        f"IDX file {name}: magic number {file_magic:#010x}, expected"
        f" {magic:#010x}."
    )
  if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
    raise ValueError(
        f"IDX file {name}: invalid magic number {file_magic:#010x} (expected"
        " 0x0000TTDD with type TT in"
        f" {sorted(hex(t) for t in _IDX_DTYPES)} and DD dimensions)."
    )
  dtype, ndim = _IDX_DTYPES[data[2]], data[3]
  if ndim == 0:
    raise ValueError(f"IDX file {name}: header declares 0 dimensions.")
  header = 4 + 4 * ndim
  if len(data) < header:
    raise ValueError(
        f"IDX file {name}: truncated header ({len(data)} bytes, {ndim}"
        f" dimensions need {header})."
    )
  shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
  expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  if len(data) != expected:
    problem = "truncated" if len(data) < expected else "trailing bytes"
    raise ValueError(
        f"IDX file {name}: {problem}: {len(data)} bytes, but shape {shape} of"
        f" {dtype.name} needs {expected}."
    )
  array = np.frombuffer(data, dtype, offset=header).reshape(shape)
  return array.astype(dtype.newbyteorder("="), copy=True)


# ----------------------------------------------------------------------------
# Locating the data folder.


def _source_checkout_data_dir() -> pathlib.Path | None:
  """The ``data/`` folder of the source checkout this package runs from.

  Only a checkout of this repository counts (an editable install or a run
  from the clone): the folder above the package must hold this project's
  ``pyproject.toml`` as well as ``data/``. An installed wheel sits in
  ``site-packages``, whose neighbours belong to other packages: their
  ``data/`` folder is never taken for ours.
  """
  root = pathlib.Path(__file__).resolve().parents[2]
  try:
    project = (root / "pyproject.toml").read_text(encoding="utf-8")
  except OSError:
    return None
  if 'name = "optax_exptest"' not in project or not (root / "data").is_dir():
    return None
  return root / "data"


def default_data_dir() -> pathlib.Path | None:
  """The data folder used when a loader gets ``data_dir=None``.

  The data is not part of the wheel (MNIST alone is 12 MB, a hundred times
  the code, and the examples and benchmarks that read it live in the
  repository), so the rule is, in order: ``$OPTAX_EXPTEST_DATA`` if set
  (whether or not it exists), else the ``data/`` folder of the source checkout
  this package is imported from (a clone, or an editable install of one),
  else ``None``: the loaders then raise an error that says what to pass.

  Returns:
    The folder, or ``None`` for an installed wheel without the variable.

  Examples:
    >>> import os
    >>> from optax_exptest.datasets import default_data_dir
    >>> os.environ["OPTAX_EXPTEST_DATA"] = "/srv/data"
    >>> str(default_data_dir())
    '/srv/data'
    >>> del os.environ["OPTAX_EXPTEST_DATA"]
  """
  env = os.environ.get(DATA_ENV_VAR)
  if env:
    return pathlib.Path(env).expanduser()
  return _source_checkout_data_dir()


# What `load_tfds` call gives each shipped dataset, for the error messages.
_TFDS_ALTERNATIVE = {
    "mnist": (' or read MNIST from TensorFlow Datasets:'
              ' optax_exptest.datasets.load_tfds("mnist", "train") (and'
              ' "test"; images (N, 28, 28, 1), labels int64)'),
}


def _find_files(
    data_dir: PathLike | None, subdir: str, filenames: Sequence[str]
) -> dict[str, pathlib.Path]:
  """Finds ``filenames`` in ``<root>/<subdir>/`` or ``<root>/`` itself."""
  root = (pathlib.Path(data_dir).expanduser() if data_dir is not None
          else default_data_dir())
  if root is None:
    looked = (f"${DATA_ENV_VAR} is not set and optax_exptest is not imported"
              f" from a source checkout (it is installed at"
              f" {pathlib.Path(__file__).resolve().parents[1]}; wheels ship no"
              " data)")
    missing = filenames[0]
  else:
    for folder in (root / subdir, root):
      paths = {f: folder / f for f in filenames}
      if all(p.is_file() for p in paths.values()):
        return paths
    folder = root / subdir if (root / subdir).is_dir() else root
    missing = next(f for f in filenames if not (folder / f).is_file())
    origin = ("data_dir argument" if data_dir is not None
              else f"${DATA_ENV_VAR}" if os.environ.get(DATA_ENV_VAR)
              else "the source checkout's data/ folder")
    looked = f"looked in {root / subdir} and {root} (from the {origin})"
  raise FileNotFoundError(
      f"Data file {subdir}/{missing} not found: {looked}. Pass"
      f" data_dir=<folder holding {subdir}/>, or set ${DATA_ENV_VAR} to that"
      " folder (the data/ folder of a clone of the optax_exptest repository"
      f" holds it){_TFDS_ALTERNATIVE.get(subdir, '')}."
  )


def _sha256(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def verify_checksums(data_dir: PathLike | None = None) -> dict[str, str]:
  """Checks the shipped raw files against their sha256 in `CHECKSUMS`.

  Args:
    data_dir: the data folder (holding ``mnist/`` and ``california_housing/``);
      ``None`` for `default_data_dir`.

  Returns:
    The sha256 hex digest of each file, by path relative to ``data_dir``.

  Raises:
    FileNotFoundError: a file is missing.
    ValueError: some digests differ; the message lists the files.

  Examples:
    >>> from optax_exptest.datasets import verify_checksums
    >>> digests = verify_checksums()  # the source checkout's data/ folder
    >>> sorted(digests)[0]
    'california_housing/cal_housing.data'
  """
  digests, bad = {}, []
  for rel, expected in CHECKSUMS.items():
    subdir, filename = rel.split("/")
    path = _find_files(data_dir, subdir, [filename])[filename]
    digests[rel] = _sha256(path)
    if digests[rel] != expected:
      bad.append(f"{path}: sha256 {digests[rel]}, expected {expected}")
  if bad:
    raise ValueError("Checksum mismatch: " + "; ".join(bad))
  return digests


# ----------------------------------------------------------------------------
# Shipped datasets.


def load_mnist(data_dir: PathLike | None = None) -> dict[str, np.ndarray]:
  """Loads MNIST from the four gzip IDX files of its original distribution.

  Args:
    data_dir: folder holding ``mnist/`` (or the four files themselves);
      ``None`` for `default_data_dir` (``$OPTAX_EXPTEST_DATA``, else the
      ``data/`` folder of the source checkout).

  Returns:
    A dict with ``train_images`` (60000, 28, 28) uint8, ``train_labels``
    (60000,) uint8, ``test_images`` (10000, 28, 28) uint8 and ``test_labels``
    (10000,) uint8. Pixels are 0 (background) to 255.

  Raises:
    FileNotFoundError: a file is missing; the message says where it looked.
    ValueError: a file is not the IDX array it should be.

  Examples:
    >>> from optax_exptest.datasets import load_mnist
    >>> mnist = load_mnist()
    >>> mnist["train_images"].shape, mnist["test_labels"].dtype
    ((60000, 28, 28), dtype('uint8'))

  References:
    LeCun, Bottou, Bengio and Haffner, `Gradient-based learning applied to
    document recognition <https://doi.org/10.1109/5.726791>`_, 1998.
  """
  paths = _find_files(data_dir, "mnist", [f for f, _ in _MNIST_FILES.values()])
  out = {key: read_idx(paths[f], magic=magic)
         for key, (f, magic) in _MNIST_FILES.items()}
  for split in ("train", "test"):
    images, labels = out[f"{split}_images"], out[f"{split}_labels"]
    if images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
      raise ValueError(
          f"MNIST {split} split: images {images.shape} and labels"
          f" {labels.shape} do not match (expected (N, 28, 28) and (N,))."
      )
  return out


def load_tiny_shakespeare(data_dir: PathLike | None = None) -> str:
  """Loads tiny Shakespeare (``input.txt`` of ``karpathy/char-rnn``), checked.

  The text is small (1.1 MB), so its sha256 is checked on every load: the
  character-level benchmarks split it by position, and an edited copy would
  silently change their train and validation sets.

  Args:
    data_dir: folder holding ``tinyshakespeare/`` (or ``input.txt`` itself);
      ``None`` for `default_data_dir`.

  Returns:
    The whole text (1,115,394 characters, 65 distinct), decoded as UTF-8.

  Raises:
    FileNotFoundError: the file is missing; the message says where it looked.
    ValueError: the file's sha256 is not the shipped one's.

  Examples:
    >>> from optax_exptest.datasets import load_tiny_shakespeare
    >>> text = load_tiny_shakespeare()
    >>> len(text), len(set(text)), text[:14]
    (1115394, 65, 'First Citizen:')

  References:
    Karpathy, `char-rnn <https://github.com/karpathy/char-rnn>`_,
    ``data/tinyshakespeare/input.txt``, 2015.
  """
  path = _find_files(data_dir, "tinyshakespeare", ["input.txt"])["input.txt"]
  digest, expected = _sha256(path), CHECKSUMS["tinyshakespeare/input.txt"]
  if digest != expected:
    raise ValueError(
        f"Checksum mismatch: {path}: sha256 {digest}, expected {expected}"
        " (the input.txt of karpathy/char-rnn, byte for byte)."
    )
  return path.read_text(encoding="utf-8")


def _read_domain(path: pathlib.Path) -> tuple[str, ...]:
  """Column names from a StatLib ``.domain`` file (``name: type.`` lines)."""
  lines = path.read_text().splitlines()
  return tuple(line.split(":")[0].strip() for line in lines if line.strip())


def load_california_housing(
    data_dir: PathLike | None = None, *, dtype: Any = np.float64
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
  """Loads California housing as scikit-learn's ``fetch_california_housing``.

  Reads StatLib's ``cal_housing.data`` (20640 block groups of the 1990 US
  census; columns as ``cal_housing.domain`` lists them) and derives the
  8 features exactly as scikit-learn does: MedInc = medianIncome, HouseAge =
  housingMedianAge, AveRooms = totalRooms / households, AveBedrms =
  totalBedrooms / households, Population = population, AveOccup = population /
  households, Latitude, Longitude; target MedHouseVal = medianHouseValue /
  100000. The arithmetic is done in float64, then cast to ``dtype``.

  Args:
    data_dir: folder holding ``california_housing/`` (or the two files);
      ``None`` for `default_data_dir`.
    dtype: a floating dtype for the returned arrays.

  Returns:
    ``(features, target, feature_names)``: features (20640, 8), target
    (20640,), and the names `CALIFORNIA_FEATURE_NAMES`.

  Raises:
    FileNotFoundError: a file is missing; the message says where it looked.
    ValueError: the files do not have the expected columns.

  Examples:
    >>> from optax_exptest.datasets import load_california_housing
    >>> x, y, names = load_california_housing()
    >>> x.shape, y.shape, names[0]
    ((20640, 8), (20640,), 'MedInc')

  References:
    Pace and Barry, `Sparse spatial autoregressions
    <https://doi.org/10.1016/S0167-7152(96)00140-X>`_, 1997.
  """
  if not np.issubdtype(np.dtype(dtype), np.floating):
    raise ValueError(f"dtype must be a floating dtype, got dtype={dtype!r}.")
  paths = _find_files(data_dir, "california_housing",
                      ["cal_housing.data", "cal_housing.domain"])
  names = _read_domain(paths["cal_housing.domain"])
  if names != _CAL_HOUSING_COLUMNS:
    raise ValueError(
        f"{paths['cal_housing.domain']}: columns {names}, expected"
        f" {_CAL_HOUSING_COLUMNS}."
    )
  raw = np.loadtxt(paths["cal_housing.data"], delimiter=",", dtype=np.float64,
                   ndmin=2)
  if raw.shape[1] != len(names):
    raise ValueError(
        f"{paths['cal_housing.data']}: {raw.shape[1]} columns, expected"
        f" {len(names)}."
    )
  col = dict(zip(names, raw.T))
  households = col["households"]
  features = np.stack([
      col["medianIncome"],
      col["housingMedianAge"],
      col["totalRooms"] / households,
      col["totalBedrooms"] / households,
      col["population"],
      col["population"] / households,
      col["latitude"],
      col["longitude"],
  ], axis=1)
  target = col["medianHouseValue"] / 100000.0
  return features.astype(dtype), target.astype(dtype), CALIFORNIA_FEATURE_NAMES


# ----------------------------------------------------------------------------
# TensorFlow Datasets.


def _import_tfds():
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        "optax_exptest.datasets.load_tfds needs tensorflow_datasets: pip"
        ' install "optax_exptest[data]".'
    ) from e
  return tfds


def _probe_address(url: str) -> tuple[str, int] | None:
  """(host, port) to connect to for ``url``, through a proxy if one is set."""
  parts = urllib.parse.urlsplit(url)
  proxy = urllib.request.getproxies().get(parts.scheme)
  if proxy:
    parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"//{proxy}")
  if not parts.hostname:
    return None
  port = parts.port or (80 if parts.scheme == "http" else 443)
  return parts.hostname, port


def _network_reachable(urls: Iterable[str], timeout_s: float) -> bool:
  """Whether a TCP connection to any of ``urls``' hosts opens in time.

  Name resolution and connection run in daemon threads, so the call returns
  within about ``timeout_s`` seconds even where DNS hangs.
  """
  addresses = {a for a in map(_probe_address, urls) if a is not None}
  reachable = threading.Event()

  def probe(address: tuple[str, int]) -> None:
    try:
      with socket.create_connection(address, timeout=timeout_s):
        reachable.set()
    except OSError:
      pass

  threads = [threading.Thread(target=probe, args=(a,), daemon=True)
             for a in addresses]
  for t in threads:
    t.start()
  deadline = time.monotonic() + timeout_s
  while (not reachable.is_set() and any(t.is_alive() for t in threads)
         and time.monotonic() < deadline):
    reachable.wait(0.02)  # Returns as soon as one address answers.
  return reachable.is_set()


def _download_urls(builder: Any) -> list[str]:
  """The URLs TFDS would fetch for ``builder``: its GCS mirror and sources."""
  urls = [f"https://{_TFDS_GCS_HOST}/tfds-data/datasets"]
  try:
    urls += list(builder.url_infos or ())
  except Exception:  # pylint: disable=broad-except
    pass  # Builders without a checksums file: the mirror is all we know.
  return urls


def load_tfds(
    name: str,
    split: str,
    *,
    data_dir: PathLike | None = None,
    download: bool = True,
    timeout_s: float = 5.0,
) -> Sequence[Any]:
  """Loads a TensorFlow Datasets split as a random-access data source.

  For datasets this repository does not ship (CIFAR-10, ImageNet, ...). This
  is ``tfds.data_source`` in the ``array_record`` file format (random access,
  no TensorFlow needed), with one difference: where the dataset is not
  prepared in ``data_dir`` and the network is unreachable, TFDS would retry
  its downloads for minutes; this fails within about ``timeout_s`` seconds
  with a `RuntimeError` that says how to fix it.

  Args:
    name: the TFDS name, e.g. ``"cifar10"`` or ``"mnist:3.0.1"``.
    split: the split, e.g. ``"train"`` or ``"test[:10%]"``.
    data_dir: the TFDS data folder; ``None`` for TFDS's default
      (``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``).
    download: whether to download and prepare the dataset when it is not
      prepared in ``data_dir`` yet.
    timeout_s: seconds to wait for the download hosts to answer.

  Returns:
    A sequence of examples (dicts of numpy arrays, e.g. ``{"image": ...,
    "label": ...}``) supporting ``len`` and indexing; `to_numpy` stacks it.

  Raises:
    ImportError: ``tensorflow_datasets`` is not installed.
    RuntimeError: the dataset is not prepared and cannot be downloaded.
    ValueError: ``timeout_s`` is not positive.

  Examples:
    Without network access or a prepared copy it fails fast and says why:

    >>> import tempfile
    >>> from optax_exptest.datasets import load_tfds
    >>> try:
    ...   load_tfds("cifar10", "train", data_dir=tempfile.mkdtemp(),
    ...             download=False)
    ... except RuntimeError as e:
    ...   print("not prepared" in str(e))
    True
  """
  if not timeout_s > 0:
    raise ValueError(f"timeout_s must be positive, got timeout_s={timeout_s}.")
  tfds = _import_tfds()
  data_dir = None if data_dir is None else os.fspath(data_dir)
  builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  if not builder.is_prepared():
    fix = (
        f"On a machine with internet access, run `tfds build {name}"
        f" --data_dir=<dir> --file_format=array_record` (or"
        f" tfds.data_source({name!r}, data_dir=<dir>,"
        " builder_kwargs={'file_format': 'array_record'})), then copy <dir> to"
        f" {builder.data_dir_root} here, or pass data_dir=<the copy>."
    )
    if not download:
      raise RuntimeError(
          f"TFDS dataset {name!r} is not prepared in {builder.data_path} and"
          f" download=False. {fix}"
      )
    urls = _download_urls(builder)
    if not _network_reachable(urls, timeout_s):
      hosts = sorted({urllib.parse.urlsplit(u).hostname or u for u in urls})
      raise RuntimeError(
          f"TFDS dataset {name!r} is not prepared in {builder.data_path}"
          f" (data_dir={data_dir!r}) and the network is unreachable: could not"
          f" connect to {', '.join(hosts)} (timeout {timeout_s} s). {fix}"
      )
    builder.download_and_prepare(file_format="array_record")
  return builder.as_data_source(split=split)


def to_numpy(
    source: Sequence[Mapping[str, Any]],
    keys: Sequence[str] | None = None,
    *,
    batch_size: int = 1024,
) -> dict[str, np.ndarray]:
  """Stacks a data source's examples into one numpy array per feature.

  Args:
    source: a sequence of dict examples, e.g. from `load_tfds`.
    keys: the features to keep; ``None`` for all of the first example's.
    batch_size: examples fetched per request from the source.

  Returns:
    ``{key: array}`` with a leading axis of length ``len(source)``.

  Examples:
    >>> import numpy as np
    >>> from optax_exptest.datasets import to_numpy
    >>> to_numpy([{"x": np.zeros(2), "y": 1}, {"x": np.ones(2), "y": 0}])["y"]
    array([1, 0])
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got batch_size={batch_size}.")
  n = len(source)
  if n == 0:
    raise ValueError("source is empty: nothing to stack.")
  keys = list(source[0].keys()) if keys is None else list(keys)
  getitems = getattr(source, "__getitems__", None)
  columns: dict[str, list[Any]] = {k: [] for k in keys}
  for start in range(0, n, batch_size):
    indices = range(start, min(start + batch_size, n))
    examples = (getitems(list(indices)) if getitems is not None
                else [source[i] for i in indices])
    for example in examples:
      for k in keys:
        columns[k].append(example[k])
  return {k: np.stack([np.asarray(v) for v in vs]) for k, vs in columns.items()}
