"""The Flax nnx CNN of `examples/flax_mnist_cnn.py`, for the benchmarks.

The example stays a self-contained script a user can copy; the benchmarks
take the same model and data from here.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
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


def train(make_tx, data, seed, epochs=3, batch_size=128):
  """Trains the CNN as `examples/flax_mnist_cnn.py` does, with any optimizer.

  Args:
    make_tx: `steps_per_epoch -> GradientTransformationExtraArgs` (its
      `update` gets the loss as `value=`).
    data: `load_mnist_images()`'s four arrays.
    seed: the initialisation's and the batch order's seed (as the example's).
    epochs: passes over the training set.
    batch_size: the mini-batch size.

  Returns:
    `dict(accuracy=[test accuracy (%) after each epoch], state=the final
    optimizer state, seconds=wall time)`; accuracy is NaN where the
    parameters are not finite.
  """
  x_train, y_train, x_test, y_test = data
  steps_per_epoch = len(x_train) // batch_size
  model = CNN(rngs=nnx.Rngs(seed))
  optimizer = nnx.Optimizer(model, make_tx(steps_per_epoch), wrt=nnx.Param)

  def loss_fn(model, x, y):
    logits = model(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @nnx.jit
  def step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
    optimizer.update(model, grads, value=loss)

  @nnx.jit
  def hits(model, x, y):
    return jnp.sum(jnp.argmax(model(x), -1) == y)

  def accuracy():
    if not all(bool(jnp.isfinite(p).all())
               for p in jax.tree.leaves(nnx.state(model, nnx.Param))):
      return float("nan")
    total = sum(int(hits(model, x_test[i:i + 1000], y_test[i:i + 1000]))
                for i in range(0, len(x_test), 1000))
    return 100 * total / len(x_test)

  rng = np.random.default_rng(seed)
  start, accs = time.perf_counter(), []
  for _ in range(epochs):
    order = rng.permutation(len(x_train))
    for i in range(steps_per_epoch):
      idx = order[i * batch_size:(i + 1) * batch_size]
      step(model, optimizer, x_train[idx], y_train[idx])
    accs.append(accuracy())
  return dict(accuracy=accs, state=optimizer.opt_state,
              seconds=time.perf_counter() - start)
