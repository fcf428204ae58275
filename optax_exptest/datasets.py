"""Dataset loaders: MNIST, California housing and tiny Shakespeare from the
repository's ``data/`` (or ``$OPTAX_EXPTEST_DATA``, or ``data_dir=``), and TFDS."""

from optax_exptest._src.datasets import CALIFORNIA_FEATURE_NAMES
from optax_exptest._src.datasets import CHECKSUMS
from optax_exptest._src.datasets import DATA_ENV_VAR
from optax_exptest._src.datasets import default_data_dir
from optax_exptest._src.datasets import load_california_housing
from optax_exptest._src.datasets import load_mnist
from optax_exptest._src.datasets import load_tfds
from optax_exptest._src.datasets import load_tiny_shakespeare
from optax_exptest._src.datasets import read_idx
from optax_exptest._src.datasets import to_numpy
from optax_exptest._src.datasets import verify_checksums

__all__ = (
    "CALIFORNIA_FEATURE_NAMES",
    "CHECKSUMS",
    "DATA_ENV_VAR",
    "default_data_dir",
    "load_california_housing",
    "load_mnist",
    "load_tfds",
    "load_tiny_shakespeare",
    "read_idx",
    "to_numpy",
    "verify_checksums",
)
