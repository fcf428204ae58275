"""Problem builders and training loops shared by the tests.

The optimisation targets of optax's contract for contrib optimizers
(`optax/contrib/_common_test.py`: a parabola, Rosenbrock, a matrix parabola
and a mixed tree), small least-squares and softmax-regression problems, and
the loops that train on them. Each builder returns `(loss, initial_params)`
and, where the minimiser is known, the minimiser too.
"""
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax


def parabola(dtype=jnp.float32):
  """`sum((p - p*)^2)` from `[-1, 10, 1]`; minimiser `[1, -1, 1]`."""
  initial = jnp.array([-1.0, 10.0, 1.0], dtype)
  final = jnp.array([1.0, -1.0, 1.0], dtype)
  return lambda p: jnp.sum(jnp.square(p - final)), initial, final


def rosenbrock(dtype=jnp.float32):
  """`(1 - x)^2 + 100 (y - x^2)^2` from the origin; minimiser `(1, 1)`."""
  initial = jnp.zeros(2, dtype)
  final = jnp.ones(2, dtype)

  def loss(p):
    return jnp.square(1.0 - p[0]) + 100.0 * jnp.square(p[1] - p[0] ** 2)

  return loss, initial, final


def matrix_parabola(dtype=jnp.float32):
  """A parabola over a 2x2 matrix of parameters."""
  initial = jnp.zeros((2, 2), dtype)
  final = jnp.array([[3.0, -2.0], [1.0, 4.0]], dtype)
  return lambda p: jnp.sum(jnp.square(p - final)), initial, final


def mixed_tensors(dtype=jnp.float32):
  """A parabola over a tuple of a vector and a matrix."""
  initial = (jnp.zeros(3, dtype), jnp.zeros((2, 2), dtype))
  final = (
      jnp.array([1.0, -1.0, 2.0], dtype),
      jnp.array([[1.0, 0.0], [-1.0, 1.0]], dtype),
  )

  def loss(p):
    return sum(jnp.sum(jnp.square(a - b)) for a, b in zip(p, final))

  return loss, initial, final


CONTRACT_TARGETS = {
    "parabola": parabola,
    "rosenbrock": rosenbrock,
    "matrix_parabola": matrix_parabola,
    "mixed_tensors": mixed_tensors,
}


def quadratic_problem(dim=6, seed=0):
  """A full-batch least-squares problem: loss(params), initial params."""
  rng = np.random.default_rng(seed)
  a = jnp.asarray(rng.normal(size=(40, dim)))
  b = jnp.asarray(rng.normal(size=(40,)))

  def loss(params):
    return 0.5 * jnp.mean((a @ params["w"] + params["b"] - b) ** 2)

  params = {"w": jnp.zeros(dim), "b": jnp.zeros(())}
  return loss, params


def least_squares_minimum(loss, params):
  """The minimum of a quadratic loss, by one Newton step (exact)."""
  flat, unravel = jax.flatten_util.ravel_pytree(params)
  f = lambda v: loss(unravel(v))
  step = jnp.linalg.solve(jax.hessian(f)(flat), jax.grad(f)(flat))
  return float(f(flat - step))


def logistic_problem(seed=0, n=512, dim=20, classes=4):
  """Softmax regression on Gaussian inputs: loss, params, inputs (numpy)."""
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(n, dim)), jnp.float32)
  y = jnp.asarray(rng.integers(0, classes, size=n))

  def loss(params):
    logits = x @ params["w"] + params["b"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  params = {"w": jnp.zeros((dim, classes)), "b": jnp.zeros(classes)}
  return loss, params, np.asarray(x)


def jitted_step(tx, loss):
  """One jitted training step: `step(params, state) -> (params, state)`."""

  @jax.jit
  def step(params, state):
    value, grads = jax.value_and_grad(loss)(params)
    updates, state = tx.update(grads, state, params, value=value)
    return optax.apply_updates(params, updates), state

  return step


def train(tx, loss, params, steps, value_fn=None):
  """Trains in a `lax.scan`.

  Args:
    tx: the transformation.
    loss: `loss(params) -> scalar`.
    params: the initial parameters.
    steps: the number of steps.
    value_fn: optional `value_fn(step, loss) -> value` passed to `update` in
      place of the loss (to feed ExpTest a corrupted loss).

  Returns:
    `(params, state, (values, decisions, rates, params per step))`.
  """

  def step(carry, i):
    params, state = carry
    value, grads = jax.value_and_grad(loss)(params)
    if value_fn is not None:
      value = value_fn(i, value)
    updates, state = tx.update(grads, state, params, value=value)
    params = optax.apply_updates(params, updates)
    # optax.tree.get finds the fields in a bare state and inside a chain.
    record = (
        value,
        optax.tree.get(state, "decision"),
        optax.tree.get(state, "learning_rate"),
        params,
    )
    return (params, state), record

  (params, state), records = jax.lax.scan(
      step, (params, tx.init(params)), jnp.arange(steps)
  )
  return params, state, records


def relu_regression(seed=0, n=256, dim=8, hidden=32, offset=-10.0):
  """A ReLU MLP on `y = x w* + offset` that a large first step kills.

  The outputs start far above the targets, the output weights are positive
  and the inputs non-negative: the first gradient step lowers every hidden
  bias and first-layer weight, past every pre-activation once `eta` is
  large, and the model predicts a constant (its output bias) from then on.

  Returns:
    `(loss, params, constant_loss)`: the constant predictor's loss is the
    variance of the targets.
  """
  rng = np.random.default_rng(seed)
  # Non-negative inputs: the first step lowers every first-layer weight too.
  x = jnp.asarray(rng.uniform(size=(n, dim)), jnp.float32)
  w_star = rng.normal(size=dim)
  y = jnp.asarray(x @ w_star + offset, jnp.float32)

  def loss(params):
    h = jax.nn.relu(x @ params["w1"] + params["b1"])
    return jnp.mean((h @ params["w2"] + params["b2"] - y) ** 2)

  params = {
      "w1": jnp.asarray(0.1 * rng.normal(size=(dim, hidden)), jnp.float32),
      "b1": jnp.full((hidden,), 0.1, jnp.float32),
      "w2": jnp.ones((hidden,), jnp.float32),
      "b2": jnp.zeros((), jnp.float32),
  }
  return loss, params, float(jnp.var(y))
