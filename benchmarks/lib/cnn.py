"""The Flax nnx CNN of `examples/flax_mnist_cnn.py`, for the benchmarks.

The example stays a self-contained script a user can copy; the benchmarks
take the same model and data from here.
"""

import numpy as np
from flax import nnx

import optax_exptest


class CNN(nnx.Module):
  """Flax's MNIST CNN: two 3x3 convolutions with average pooling, two dense."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
    self.linear1 = nnx.Linear(7 * 7 * 64, 256, rngs=rngs)
    self.linear2 = nnx.Linear(256, 10, rngs=rngs)

  def __call__(self, x):
    pool = lambda x: nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
    x = pool(nnx.relu(self.conv1(x)))
    x = pool(nnx.relu(self.conv2(x)))
    x = x.reshape(x.shape[0], -1)
    return self.linear2(nnx.relu(self.linear1(x)))


def load_mnist_images(subset=None):
  """MNIST as (N, 28, 28, 1) images normalised by the global mean and std."""
  mnist = optax_exptest.datasets.load_mnist()
  x_train = mnist["train_images"].astype(np.float32)[..., None] / 255
  x_test = mnist["test_images"].astype(np.float32)[..., None] / 255
  y_train = mnist["train_labels"].astype(np.int32)
  y_test = mnist["test_labels"].astype(np.int32)
  if subset:
    x_train, y_train = x_train[:subset], y_train[:subset]
    x_test, y_test = x_test[:subset // 6], y_test[:subset // 6]
  mean, std = x_train.mean(), x_train.std()
  return (x_train - mean) / std, y_train, (x_test - mean) / std, y_test
