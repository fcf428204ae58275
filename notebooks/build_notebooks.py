"""Writes the notebooks of this folder from the cells below (run it after an edit).

`python notebooks/build_notebooks.py --execute` also runs them with their
full settings (a few minutes on two CPU cores) and stores the outputs, so
that the figures show on GitHub. Each notebook reads `OPTAX_EXPTEST_SMOKE=1`
to run with small settings, which is how `make test` executes them
(tests/test_notebooks.py).
"""
import argparse
import pathlib

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = pathlib.Path(__file__).resolve().parent

SETUP = '''import os
import jax, jax.numpy as jnp, numpy as np, optax
import matplotlib.pyplot as plt
import optax_exptest

# `make test` runs this notebook with OPTAX_EXPTEST_SMOKE=1: small settings.
SMOKE = os.environ.get("OPTAX_EXPTEST_SMOKE") == "1"'''

QUICKSTART = [
    new_markdown_cell("""# optax_exptest quickstart

Train MNIST logistic regression **without choosing a learning rate**:

1. compute the starting rate, an upper bound, from the training inputs;
2. let ExpTest (arXiv 2411.16975) search the rate (cut and restart while the
   loss does not decay exponentially) and tune it (cut on plateaus);
3. look at the loss curve with ExpTest's decisions marked."""),
    new_code_cell(SETUP),
    new_markdown_cell("""## 1. The bound

`lr_upper_bound` is `2 s / ((s - 1) lambda_max)` of the inputs' correlation
matrix, the rate above which a linear model trained by gradient descent
diverges (the paper's eq. 16). The authors' code prints 0.04939862 on MNIST."""),
    new_code_cell('''mnist = optax_exptest.datasets.load_mnist()  # the IDX files shipped in data/
n = 6000 if SMOKE else 60000
x_train = mnist["train_images"][:n].reshape(n, -1).astype(np.float32) / 255
y_train = mnist["train_labels"][:n].astype(np.int32)
x_test = mnist["test_images"].reshape(10000, -1).astype(np.float32) / 255
y_test = mnist["test_labels"].astype(np.int32)
mean, std = x_train.mean(), x_train.std()
x_train, x_test = (x_train - mean) / std, (x_test - mean) / std

eta_max = optax_exptest.lr_upper_bound(x_train, loss="cross_entropy")
print(f"eta_max = {eta_max:.8f}")
print("from the raw second moments instead:",
      optax_exptest.lr_upper_bound(x_train, covariance="second_moment"))'''),
    new_markdown_cell("""## 2. ExpTest on MNIST

`exptest(eta_max)` is an Optax `GradientTransformationExtraArgs`: its
`update` takes the loss as `value=`. The whole training loop runs in
`lax.scan` chunks: no host round trip per step. The state's `decision`,
`p_value` and `learning_rate` are recorded at every step."""),
    new_code_cell('''def loss_fn(params, x, y):
  logits = x @ params["w"] + params["b"]
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

tx = optax_exptest.exptest(eta_max)          # alpha = 0.05, beta = 0.33
key = jax.random.PRNGKey(0)
bound = 1 / np.sqrt(784)                     # PyTorch's nn.Linear initialisation
params = {"w": jax.random.uniform(key, (784, 10), minval=-bound, maxval=bound),
          "b": jnp.zeros(10)}
state = tx.init(params)
xs, ys = jnp.asarray(x_train), jnp.asarray(y_train)

@jax.jit
def epoch(params, state, key):
  order = jax.random.permutation(key, len(xs))[: len(xs) // 32 * 32].reshape(-1, 32)
  def step(carry, idx):
    params, state = carry
    value, grads = jax.value_and_grad(loss_fn)(params, xs[idx], ys[idx])
    updates, state = tx.update(grads, state, params, value=value)
    record = (value, state.decision, state.p_value, state.learning_rate)
    return (optax.apply_updates(params, updates), state), record
  return jax.lax.scan(step, (params, state), order)

records = []
for e in range(1 if SMOKE else 5):
  (params, state), rec = epoch(params, state, jax.random.fold_in(key, e))
  records.append(rec)
losses, decisions, p_values, rates = (np.concatenate(r) for r in zip(*records))
acc = jnp.mean(jnp.argmax(jnp.asarray(x_test) @ params["w"] + params["b"], -1) == y_test)
print(f"test accuracy: {100 * float(acc):.2f}%  (the paper: 92.30 +- 0.07)")
optax_exptest.exptest_summary(state)'''),
    new_code_cell('''for step in np.nonzero(decisions)[0]:
  d = optax_exptest.Decision(int(decisions[step]))
  print(f"step {step + 1:5d}  {d.name.lower():11s}  p = {p_values[step]:.3g}  rate -> {rates[step]:.4g}")'''),
    new_markdown_cell("""## 3. The loss curve with the decisions

`optax_exptest.plotting.plot_run` draws the loss (and its moving average),
the rate, and each decision in `optax_exptest.DECISION_COLORS`. Green:
exponential decay detected (searching ends); red: no decay, rate cut and
parameters reset; orange: plateau, rate cut. (It also takes the per-step
`exptest_summary` dicts of the Flax notebook.)"""),
    new_code_cell('''ax = optax_exptest.plotting.plot_run(losses, decisions, rates, smooth=50, log_steps=True,
                                    title="ExpTest on MNIST")
plt.show()'''),
]

ZOOMING = [
    new_markdown_cell("""# Zooming search over learning rates, vmapped

The zooming algorithm (a Lipschitz bandit, arXiv 2409.09783) treats learning
rates as arms. `optax_exptest.zoom` trains each round's arms together: one
compiled `jax.vmap` call per round (sharded over devices when given a mesh),
compiled once for all rounds."""),
    new_code_cell(SETUP),
    new_code_cell('''mnist = optax_exptest.datasets.load_mnist()
n = 3000 if SMOKE else 20000
x = mnist["train_images"][:n].reshape(n, -1).astype(np.float32) / 255
x = jnp.asarray((x - x.mean()) / x.std())
y = jnp.asarray(mnist["train_labels"][:n].astype(np.int32))
eta_max = optax_exptest.lr_upper_bound(np.asarray(x))
steps = 100 if SMOKE else 400

def train_fn(learning_rate, key):
  """Trains logistic regression with SGD at `learning_rate`; reward in [0, 1]."""
  params = {"w": jnp.zeros((784, 10)), "b": jnp.zeros(10)}
  tx = optax.sgd(learning_rate)
  order = jax.random.choice(key, n, (steps, 128))
  loss = lambda p, idx: optax.softmax_cross_entropy_with_integer_labels(
      x[idx] @ p["w"] + p["b"], y[idx]).mean()
  def step(carry, idx):
    p, s = carry
    g = jax.grad(loss)(p, idx)
    u, s = tx.update(g, s, p)
    return (optax.apply_updates(p, u), s), None
  (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), order)
  final = loss(params, jnp.arange(n))
  return optax_exptest.loss_reward(final, jnp.log(10.0))  # 1 - loss / ln 10'''),
    new_markdown_cell("""Search the rate between `1e-3 eta_max` and `30 eta_max`, log-uniformly, 8
arms a round; `radius_scale=0.1` is the paper's setting for ReLU networks
and the better choice at small budgets."""),
    new_code_cell('''rounds, arms = (2, 4) if SMOKE else (6, 8)
search = optax_exptest.ZoomingSearch(1e-3 * eta_max, 30 * eta_max, scale="log",
                                     horizon=rounds * arms, radius_scale=0.1)
search = optax_exptest.zoom(train_fn, search, rounds=rounds, arms_per_round=arms,
                            key=jax.random.PRNGKey(0))
best_rate, best_reward = search.best
print(f"best rate {best_rate:.4g} ({best_rate / eta_max:.3g} x eta_max), reward {best_reward:.3f}")'''),
    new_code_cell('''history = search.history
rates = np.array([h["learning_rate"] for h in history])
rewards = np.array([h["reward"] for h in history])
rounds_of = np.array([h["round"] for h in history])
fig, ax = plt.subplots(figsize=(8, 4))
sc = ax.scatter(rates / eta_max, rewards, c=rounds_of, cmap="viridis")
ax.axvline(best_rate / eta_max, color="k", ls=":", label="best")
ax.set(xscale="log", xlabel="learning rate / eta_max", ylabel="reward",
       title="Zooming: every pull, coloured by round")
fig.colorbar(sc, label="round")
ax.legend()
plt.show()'''),
    new_markdown_cell("""`zoom(..., checkpoint="search.json")` writes the search after every round and
resumes from it; `search.state_dict()` / `ZoomingSearch.from_state_dict()`
make the search plain JSON. See `docs/distributed.md` for several hosts and
for plugging `ask`/`tell` into Ray Tune or Optuna."""),
]

FLAX = [
    new_markdown_cell("""# ExpTest with Flax: an nnx CNN on MNIST

`nnx.Optimizer(model, optax_exptest.exptest(...), wrt=nnx.Param)` works as
is: `optimizer.update(model, grads, value=loss)` forwards the loss. Momentum
goes in as ExpTest's `inner=` transformation, so that a restart resets it.
(For `flax.linen`, `optax_exptest.flax_utils.TrainState` passes `value=`.)"""),
    new_code_cell(SETUP + '''
from flax import nnx'''),
    new_code_cell('''class CNN(nnx.Module):
  def __init__(self, *, rngs):
    self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
    self.linear1 = nnx.Linear(7 * 7 * 64, 256, rngs=rngs)
    self.linear2 = nnx.Linear(256, 10, rngs=rngs)

  def __call__(self, x):
    pool = lambda x: nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
    x = pool(nnx.relu(self.conv1(x)))
    x = pool(nnx.relu(self.conv2(x)))
    return self.linear2(nnx.relu(self.linear1(x.reshape(x.shape[0], -1))))

mnist = optax_exptest.datasets.load_mnist()
n = 3072 if SMOKE else 60000
x_train = mnist["train_images"][:n, ..., None].astype(np.float32) / 255
y_train = mnist["train_labels"][:n].astype(np.int32)
x_test = mnist["test_images"][:, :, :, None].astype(np.float32) / 255
y_test = mnist["test_labels"].astype(np.int32)
mean, std = x_train.mean(), x_train.std()
x_train, x_test = (x_train - mean) / std, (x_test - mean) / std

eta_max = optax_exptest.lr_upper_bound(x_train.reshape(n, -1))
model = CNN(rngs=nnx.Rngs(0))
optimizer = nnx.Optimizer(
    model, optax_exptest.exptest(eta_max, inner=optax.trace(decay=0.9)), wrt=nnx.Param)

@nnx.jit
def train_step(model, optimizer, x, y):
  loss_fn = lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()
  loss, grads = nnx.value_and_grad(loss_fn)(model)
  optimizer.update(model, grads, value=loss)
  return loss'''),
    new_code_cell('''log = []
rng = np.random.default_rng(0)
batch = 64 if SMOKE else 128
for epoch in range(1 if SMOKE else 2):
  order = rng.permutation(n)
  for i in range(n // batch):
    idx = order[i * batch:(i + 1) * batch]
    loss = train_step(model, optimizer, x_train[idx], y_train[idx])
    row = optax_exptest.exptest_summary(optimizer.opt_state)  # plain numbers
    log.append(dict(row, loss=float(loss)))
predict = nnx.jit(lambda m, x: jnp.argmax(m(x), -1))
acc = np.mean([np.mean(predict(model, x_test[i:i + 1000]) == y_test[i:i + 1000])
               for i in range(0, 10000, 1000)])
print(f"test accuracy: {100 * acc:.2f}%")
log[-1]'''),
    new_code_cell('''# The per-step summaries (with the loss) are a run plot_run reads as it is.
ax = optax_exptest.plotting.plot_run(log, title="ExpTest with momentum: an nnx CNN on MNIST")
plt.show()'''),
]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--execute", action="store_true",
                      help="run each notebook (full settings) and keep its outputs")
  args = parser.parse_args()
  for name, cells in [("quickstart", QUICKSTART), ("zooming", ZOOMING), ("flax", FLAX)]:
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    })
    if args.execute:
      from nbclient import NotebookClient  # pylint: disable=g-import-not-at-top
      NotebookClient(nb, timeout=1200, kernel_name="python3",
                     resources={"metadata": {"path": str(HERE)}}).execute()
    nbformat.write(nb, HERE / f"{name}.ipynb")
    print("wrote", HERE / f"{name}.ipynb")


if __name__ == "__main__":
  main()
