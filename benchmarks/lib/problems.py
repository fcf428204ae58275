"""The benchmarks' training problems: data, model and loss, nothing else.

* MNIST logistic regression (the ExpTest paper's section IV-A, and the
  zooming benchmarks): a linear layer 784 -> 10 on pixels normalised by the
  training images' global mean and std, cross-entropy. The numbers are those
  of `examples/mnist_demo.py`, which keeps its own copy of this small code.
* The California-housing MLP (the ExpTest paper's section IV-B): an 8-32-32-1
  ReLU network on scikit-learn's form of the data, MSE.
* The teacher-student nets (the zooming paper, arXiv 2409.09783): a
  one-hidden-layer teacher (20 -> 30 -> 1) labels Gaussian inputs; a student
  of the same shape learns them, MSE.

How a problem is trained (optimizers, arms, evaluation) is `trainers`' and
the experiments' business.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_exptest

# ----------------------------------------------------------------------------
# MNIST logistic regression.


def load_mnist(subset: int | None = None, data_dir=None, *,
               test: int | None = None):
  """Flattened MNIST, normalised by the training pixels' global mean and std.

  Args:
    subset: keep the first `subset` training images (and, unless `test` is
      given, the first `subset // 6` test images); `None` for all.
    data_dir: the data folder, as `optax_exptest.datasets.load_mnist`.
    test: keep the first `test` test images; `None` as above.

  Returns:
    `(x_train, y_train, x_test, y_test)` as numpy arrays, images float32
    `(n, 784)`, labels uint8. Only the kept images are converted.
  """
  mnist = optax_exptest.datasets.load_mnist(data_dir)
  subset = subset or None  # 0: all, as None.
  if subset and test is None:
    test = subset // 6
  flat = lambda images: images.reshape(-1, 784).astype(np.float32) / 255
  x_train, y_train = flat(mnist["train_images"][:subset]), mnist["train_labels"][:subset]
  x_test, y_test = flat(mnist["test_images"][:test]), mnist["test_labels"][:test]
  mean, std = x_train.mean(), x_train.std()
  return (x_train - mean) / std, y_train, (x_test - mean) / std, y_test


class MnistData(NamedTuple):
  x_train: jax.Array
  y_train: jax.Array
  x_test: jax.Array
  y_test: jax.Array


def mnist_on_device(subset: int | None = None) -> MnistData:
  """`load_mnist(subset)`'s arrays, on the device."""
  return MnistData(*map(jnp.asarray, load_mnist(subset)))


def init_linear(key, n_in: int = 784, n_out: int = 10):
  """PyTorch's `nn.Linear` initialisation, as in the authors' code."""
  bound = 1 / np.sqrt(n_in)
  kw, kb = jax.random.split(key)
  return {
      "w": jax.random.uniform(kw, (n_in, n_out), minval=-bound, maxval=bound),
      "b": jax.random.uniform(kb, (n_out,), minval=-bound, maxval=bound),
  }


def linear_logits(params, x):
  return x @ params["w"] + params["b"]


def cross_entropy(params, x, y):
  """The mean cross-entropy of the linear model on `(x, y)`."""
  return optax.softmax_cross_entropy_with_integer_labels(
      linear_logits(params, x), y).mean()


def accuracy(params, x, y):
  """The linear model's accuracy on `(x, y)` (a traced scalar)."""
  return jnp.mean(jnp.argmax(linear_logits(params, x), -1) == y)


# ----------------------------------------------------------------------------
# California housing: an 8-32-32-1 MLP.

CALIFORNIA_LAYERS = (8, 32, 32, 1)
# Rows x arms of one slice per device that keep its activations in cache
# (measured: docs/design.md, "Measurement notes").
_ROWS_TIMES_ARMS = 2400


class CaliforniaData(NamedTuple):
  """Inputs feature-major, `(8, rows)`; targets `(rows,)`."""

  x_train: jax.Array
  y_train: jax.Array
  x_val: jax.Array
  y_val: jax.Array
  x_test: jax.Array
  y_test: jax.Array


def sklearn_split(n: int, test_size: float, seed: int):
  """Indices of `sklearn.model_selection.train_test_split(..., random_state=seed)`.

  scikit-learn's ShuffleSplit draws `RandomState(seed).permutation(n)`, takes
  the first `ceil(test_size * n)` indices as the test part and the rest as
  the training part.
  """
  n_test = int(np.ceil(test_size * n))
  perm = np.random.RandomState(seed).permutation(n)
  return perm[n_test:], perm[:n_test]


def load_california(seed: int = 42) -> CaliforniaData:
  """The authors' 60/20/20 split, standardised on the training rows."""
  x, y, _ = optax_exptest.datasets.load_california_housing()
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  rest, test = sklearn_split(len(x), 0.2, seed)
  train, val = sklearn_split(len(rest), 0.25, seed)
  train, val = rest[train], rest[val]
  mean, std = x[train].mean(0), x[train].std(0)
  # Feature-major (features, rows): see `predict`.
  scale = lambda a: jnp.asarray(((a - mean) / std).T, jnp.float32)
  target = lambda idx: jnp.asarray(y[idx], jnp.float32)
  return CaliforniaData(scale(x[train]), target(train), scale(x[val]), target(val),
                        scale(x[test]), target(test))


def init_mlp(key, layers=CALIFORNIA_LAYERS):
  """PyTorch's `nn.Linear` default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  params = []
  for k, (fan_in, fan_out) in zip(jax.random.split(key, len(layers) - 1),
                                  zip(layers[:-1], layers[1:])):
    kw, kb = jax.random.split(k)
    bound = 1 / np.sqrt(fan_in)
    params.append((
        jax.random.uniform(kw, (fan_in, fan_out), minval=-bound, maxval=bound),
        jax.random.uniform(kb, (fan_out,), minval=-bound, maxval=bound),
    ))
  return params


def predict(params, x_t):
  """The MLP on inputs stored feature-major, `x_t` of shape (features, rows).

  Rows along the last axis keep every activation contiguous along the long
  dimension, which XLA vectorises better on a CPU (about 1.6x here).
  """
  h = x_t
  for i, (w, b) in enumerate(params):
    h = w.T @ h + b[:, None]
    if i < len(params) - 1:
      h = jax.nn.relu(h)
  return h[0]


def mse(params, x_t, y):
  return jnp.mean((predict(params, x_t) - y) ** 2)


def full_batch_value_and_grad(params, x_t, y, row_chunks):
  """MSE and its gradient over all rows, summed slice by slice.

  The same gradient as `jax.value_and_grad(mse)`, but each slice's
  activations stay in the CPU's cache (about 1.7x faster here than the plain
  row-major full batch).
  """
  features, n = x_t.shape
  if n % row_chunks:
    raise ValueError(f"{n} rows do not split into {row_chunks} chunks")
  sse = lambda p, x, y: jnp.sum((predict(p, x) - y) ** 2)

  def add(acc, xy):
    value, grads = jax.value_and_grad(sse)(params, *xy)
    return jax.tree.map(jnp.add, acc, (value, grads)), None

  zero = (jnp.zeros(()), jax.tree.map(jnp.zeros_like, params))
  slices = (x_t.reshape(features, row_chunks, -1).transpose(1, 0, 2),
            y.reshape(row_chunks, -1))
  (value, grads), _ = jax.lax.scan(add, zero, slices)
  return value / n, jax.tree.map(lambda g: g / n, grads)


def auto_row_chunks(rows: int, arms_per_device: int) -> int:
  """The fewest slices that divide `rows` and keep a slice in cache."""
  for chunks in range(1, rows + 1):
    if rows % chunks == 0 and rows // chunks * arms_per_device <= _ROWS_TIMES_ARMS:
      return chunks
  return rows


# ----------------------------------------------------------------------------
# Teacher-student nets.

TEACHER_ACTIVATIONS = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid}


def teacher_student_data(activation: str, n: int, *, d: int = 20, h: int = 30,
                         seed: int = 0):
  """`n` Gaussian inputs `(n, d)` and the labels of a random teacher `(n,)`.

  The teacher is a one-hidden-layer net `d -> h -> 1` with `activation`
  (a key of `TEACHER_ACTIVATIONS`), weights N(0, 1/fan_in), hidden biases
  N(0, 0.01) and no output bias.
  """
  if activation not in TEACHER_ACTIVATIONS:
    raise ValueError(f"activation must be one of {sorted(TEACHER_ACTIVATIONS)},"
                     f" got activation={activation!r}.")
  act = TEACHER_ACTIVATIONS[activation]

  @jax.jit
  def teacher_data(key):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    x = jax.random.normal(k1, (n, d))
    w1, b1 = jax.random.normal(k2, (d, h)) / np.sqrt(d), 0.1 * jax.random.normal(k3, (h,))
    return x, act(x @ w1 + b1) @ (jax.random.normal(k4, (h,)) / np.sqrt(h))

  return teacher_data(jax.random.PRNGKey(seed))


def init_student(key, d: int = 20, h: int = 30):
  """The student's initialisation: weights N(0, 1/fan_in), zero biases."""
  ka, kb = jax.random.split(key)
  return dict(w1=jax.random.normal(ka, (d, h)) / np.sqrt(d), b1=jnp.zeros(h),
              w2=jax.random.normal(kb, (h,)) / np.sqrt(h))


def student_mse(params, x, y, activation: str):
  """The student's mean squared error on `(x, y)`."""
  act = TEACHER_ACTIVATIONS[activation]
  return jnp.mean((act(x @ params["w1"] + params["b1"]) @ params["w2"] - y) ** 2)
