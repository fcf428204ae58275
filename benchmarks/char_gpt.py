"""A character-level GPT (Flax NNX) on tiny Shakespeare: final validation loss.

nanoGPT's `shakespeare_char` recipe (`config/train_shakespeare_char.py`:
AdamW, betas 0.9 / 0.99, weight decay 0.1 on the matrices only, gradients
clipped to norm 1, linear warmup then cosine to a tenth of the peak, the
text's first 90 % trains and the last 10 % validates) scaled down to about a
minute a run on the shared two-core machine: `LAYERS` layers, `HEADS` heads, width
`WIDTH`, context `BLOCK`, batch `BATCH`, `STEPS` steps, no dropout (6
layers of 384 with dropout 0.2 and 5000 steps in nanoGPT), tied input and
output embeddings as nanoGPT's.

Rows: AdamW with that schedule over a grid of peak rates `GRID` (half a
decade apart, the best inside it); Prodigy, schedule-free AdamW and COCOB
(`optax.contrib`, at their defaults, with the recipe's weight decay where
they take one); ExpTest with `inner=optax.scale_by_adam()` started at
`lr_upper_bound_from_model` (the Hessian's bound on 4 training batches at
the initial parameters), alone and with the recipe's weight decay chained
inside it (`optimizers.build_exptest`); `--exptest-kwargs` passes options
to `optax_exptest.exptest`. The validation loss (nats per character) is the
mean over `VAL_BATCHES` fixed windows of the validation text, evaluated every
`EVAL_EVERY` steps inside the compiled chunk (`trainers.train_in_chunks`).

Run: `python -m benchmarks char_gpt [--seeds 2] [--quick]
[--exptest-kwargs JSON]`.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import optax_exptest
from optax_exptest import plotting
from benchmarks.lib import common, optimizers, plots, trainers

LAYERS, HEADS, WIDTH, BLOCK, BATCH = 2, 4, 64, 64, 32
# 600 steps: about a minute a run on this repository's shared two-core
# machine (about 100 ms a step at load 10; 2000 steps would be 4 minutes).
STEPS, WARMUP, EVAL_EVERY, VAL_BATCHES = 600, 20, 150, 8
WEIGHT_DECAY = 0.1
# Half a decade apart; short runs of a small model train best near 1e-2.
GRID = (1e-3, 3e-3, 1e-2, 3e-2)


class Block(nnx.Module):
  """Pre-norm transformer block: causal self-attention, then a 4x MLP."""

  def __init__(self, width, heads, *, rngs):
    self.ln1 = nnx.LayerNorm(width, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(heads, width, decode=False, rngs=rngs)
    self.ln2 = nnx.LayerNorm(width, rngs=rngs)
    self.fc = nnx.Linear(width, 4 * width, rngs=rngs)
    self.proj = nnx.Linear(4 * width, width, rngs=rngs)

  def __call__(self, x, mask):
    x = x + self.attn(self.ln1(x), mask=mask)
    return x + self.proj(nnx.gelu(self.fc(self.ln2(x))))


class GPT(nnx.Module):
  """nanoGPT's model, small: token and position embeddings, blocks, a final
  norm, logits from the token embedding (tied)."""

  def __init__(self, vocab, *, layers=LAYERS, heads=HEADS, width=WIDTH,
               block=BLOCK, rngs):
    self.wte = nnx.Embed(vocab, width, rngs=rngs)
    self.wpe = nnx.Embed(block, width, rngs=rngs)
    self.blocks = nnx.List([Block(width, heads, rngs=rngs) for _ in range(layers)])
    self.ln_f = nnx.LayerNorm(width, rngs=rngs)

  def __call__(self, tokens):
    x = self.wte(tokens) + self.wpe(jnp.arange(tokens.shape[-1]))
    mask = nnx.make_causal_mask(tokens)
    for block in self.blocks:
      x = block(x, mask)
    return self.wte.attend(self.ln_f(x))


def load(quick: bool = False):
  """The text as int32 character ids, nanoGPT's 90 / 10 split, the vocabulary."""
  text = optax_exptest.datasets.load_tiny_shakespeare()
  vocab = sorted(set(text))
  ids = np.frombuffer(text.encode("ascii"), np.uint8)
  lookup = np.zeros(256, np.int32)
  lookup[np.frombuffer("".join(vocab).encode("ascii"), np.uint8)] = np.arange(len(vocab))
  ids = lookup[ids]
  split = int(0.9 * len(ids))
  train, val = ids[:split], ids[split:]
  if quick:
    train, val = train[:20_000], val[:5_000]
  return train, val, len(vocab)


def windows(data, starts):
  """`(inputs, targets)`: `BLOCK` characters from each start, and the next ones."""
  idx = starts[:, None] + jnp.arange(BLOCK)
  return data[idx], data[idx + 1]


def decay_mask(params):
  """nanoGPT decays the matrices (embeddings and kernels), not biases or norms."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def configs(eta_model: float, steps: int, exptest_kwargs: dict):
  """`name -> (label, make_tx(params), peak rate or None)`."""
  warmup = min(WARMUP, steps // 10)  # a smoke run's few steps

  def adamw(peak):
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, peak, warmup, steps, end_value=peak / 10)
    return lambda params: optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adamw(schedule, b1=0.9, b2=0.99, weight_decay=WEIGHT_DECAY,
                    mask=decay_mask(params)))

  out = {f"adamw_{peak:g}": (f"AdamW, peak {peak:g}, warmup + cosine", adamw(peak), peak)
         for peak in GRID}
  out["prodigy"] = ("Prodigy", lambda params: optax.contrib.prodigy(
      weight_decay=WEIGHT_DECAY), None)
  out["schedule_free_adamw"] = (
      "Schedule-free AdamW", lambda params: optax.contrib.schedule_free_adamw(
          warmup_steps=warmup, b2=0.99, weight_decay=WEIGHT_DECAY), None)
  out["cocob"] = ("COCOB", lambda params: optax.contrib.cocob(), None)
  out["exptest_adam"] = (
      "ExpTest, inner scale_by_adam()", lambda params: optimizers.build_exptest(
          eta_model, "adam", **exptest_kwargs), None)
  out["exptest_adamw"] = (
      "ExpTest, inner scale_by_adam() + weight decay 0.1",
      lambda params: optimizers.build_exptest(
          eta_model, "adam", weight_decay=WEIGHT_DECAY,
          weight_decay_mask=decay_mask(params), **exptest_kwargs), None)
  return out


def loss_fn(graphdef):
  """`loss(params, (inputs, targets))`: mean cross-entropy, nats per character;
  `params` is the model's `nnx.State` (a pytree optax updates as it is)."""

  def loss(params, batch):
    logits = nnx.merge(graphdef, params)(batch[0])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()

  return loss


def program(make_tx, data, vocab, *, steps, evaluated_at_average=False):
  """`run(seed)` of one configuration (its seeds share one compilation)."""
  train, val = data
  val_starts = np.linspace(0, len(val) - BLOCK - 2, VAL_BATCHES * BATCH).astype(np.int32)
  compiled = {}

  def run(seed):
    graphdef, params = nnx.split(GPT(vocab, rngs=nnx.Rngs(seed)))
    loss = loss_fn(graphdef)
    tx = optax.with_extra_args_support(make_tx(params))

    # The seed's batch key is in `shared`, not closed over: the seeds share
    # the chunks compiled for the first, which would keep its key.
    def step(carry, i, shared):
      params, state = carry
      starts = jax.random.randint(jax.random.fold_in(shared[3], i), (BATCH,), 0,
                                  shared[0].shape[0] - BLOCK - 1)
      value, grads = jax.value_and_grad(loss)(params, windows(shared[0], starts))
      updates, state = tx.update(grads, state, params, value=value)
      rate, decision = trainers.exptest_fields(state)
      return (optax.apply_updates(params, updates), state), (value, rate, decision)

    def evaluate(carry, shared):
      params, state = carry
      if evaluated_at_average:  # schedule-free: its averaged iterate
        params = optax.contrib.schedule_free_eval_params(state, params)
      starts = shared[2].reshape(VAL_BATCHES, BATCH)
      return jnp.mean(jax.lax.map(
          lambda s: loss(params, windows(shared[1], s)), starts))

    shared = (jnp.asarray(train), jnp.asarray(val), jnp.asarray(val_starts),
              jax.random.PRNGKey(seed + 1000))
    return trainers.train_in_chunks(
        step, evaluate, (params, tx.init(params)), steps=steps,
        eval_every=min(EVAL_EVERY, steps), shared=shared, compiled=compiled)

  return run


def model_bound(train, vocab, seed: int = 0, num_iterations: int = 8):
  """`lr_upper_bound_from_model` on 4 training batches at seed 0's start."""
  graphdef, params = nnx.split(GPT(vocab, rngs=nnx.Rngs(seed)))
  starts = np.arange(4 * BATCH, dtype=np.int32).reshape(4, BATCH) * 997 % (len(train) - BLOCK - 1)
  batches = [windows(jnp.asarray(train), jnp.asarray(s)) for s in starts]
  return float(optax_exptest.lr_upper_bound_from_model(
      loss_fn(graphdef), params, batches, num_iterations=num_iterations))


def markdown(out) -> str:
  best = out["best_grid"]
  lines = [
      "# Character GPT on tiny Shakespeare", "",
      f"A {LAYERS}-layer, {HEADS}-head, width-{WIDTH} character GPT (Flax NNX),"
      f" context {BLOCK}, batch {BATCH}, {out['steps']} steps, nanoGPT's"
      " `shakespeare_char` recipe scaled down (see `benchmarks/char_gpt.py`);"
      f" validation loss in nats per character over {VAL_BATCHES * BATCH}"
      f" windows of the last 10 % of the text, {len(out['seeds'])} seeds."
      f" ExpTest starts at `lr_upper_bound_from_model` = {out['eta_model']:.4g}."
      f" Best peak rate of the AdamW grid: {best['peak']:g} ({best['mean']:.4f})."
      f" Measured in {out['wall_seconds']:.0f} s.", "",
  ]
  rows = []
  for name, r in out["runs"].items():
    mark = " *" if name == best["name"] else ""
    rates = ("" if "largest_rate" not in r else ", ".join(
        f"{a:.3g} / {b:.3g}" for a, b in zip(r["largest_rate"], r["final_rate"])))
    rows.append([r["label"] + mark, ", ".join(f"{v:.4f}" for v in r["final_val_loss"]),
                 f"{np.mean(r['final_val_loss']):.4f}",
                 f"{np.mean(r['final_val_loss']) - best['mean']:+.4f}", rates,
                 f"{np.mean(r['seconds']):.0f}"])
  lines.append(common.markdown_table(
      ["optimizer", "final val. loss (per seed)", "mean", "vs best grid rate",
       "ExpTest's largest / final rate (per seed)", "s per run"], rows))
  lines += ["", "`*`: the grid's best peak rate."]
  return "\n".join(lines)


def main(argv=None):
  parser = common.parser(__doc__, seeds=2)
  common.add_exptest_kwargs(parser)
  parser.add_argument("--names", nargs="*", default=None,
                      help="run only these rows (default: all)")
  args = parser.parse_args(argv)
  start_time = time.perf_counter()
  train, val, vocab = load(args.quick)
  steps = 10 if args.quick else STEPS
  seeds = list(range(1 if args.quick else args.seeds))
  eta_model = model_bound(train, vocab, num_iterations=3 if args.quick else 8)
  table = configs(eta_model, steps, args.exptest_kwargs)
  names = args.names or (["exptest_adamw"] if args.quick else list(table))
  out = dict(seeds=seeds, steps=steps, eta_model=eta_model, grid=list(GRID),
             exptest_kwargs=args.exptest_kwargs, runs={},
             model=dict(layers=LAYERS, heads=HEADS, width=WIDTH, block=BLOCK,
                        batch=BATCH, warmup=WARMUP, weight_decay=WEIGHT_DECAY))
  panels = []
  for name in names:
    label, make_tx, peak = table[name]
    run_seed = program(make_tx, (train, val), vocab, steps=steps,
                       evaluated_at_average=name == "schedule_free_adamw")
    record = dict(label=label, peak=peak, final_val_loss=[], val_loss=[], seconds=[])
    for seed in seeds:
      run = run_seed(seed)
      losses, rates, decisions = run.records
      record["final_val_loss"].append(float(run.evals[-1]))
      record["val_loss"].append(np.asarray(run.evals, float).tolist())
      record["seconds"].append(float(run.seconds[-1]))
      if name.startswith("exptest"):
        summary = optax_exptest.exptest_summary(run.carry[1])
        record.setdefault("largest_rate", []).append(float(np.nanmax(rates)))
        record.setdefault("final_rate", []).append(float(summary["learning_rate"]))
        record.setdefault("cuts", []).append(int(summary["num_cuts"]))
        record.setdefault("decision_steps", []).append(
            {str(int(i) + 1): optax_exptest.Decision(int(decisions[i])).name.lower()
             for i in np.flatnonzero(np.isin(decisions, list(map(int, plotting.MARKED))))})
        record.setdefault("loss_every_10", []).append(losses[::10].tolist())
        panels.append(dict(label=f"{label}, seed {seed}", losses=losses,
                           rates=rates, decisions=decisions))
      print(name, seed, record["final_val_loss"][-1], record["seconds"][-1], flush=True)
    out["runs"][name] = record
  grid = {n: np.mean(r["final_val_loss"]) for n, r in out["runs"].items()
          if r["peak"] is not None}
  if grid:
    best = min(grid, key=grid.get)
    out["best_grid"] = dict(name=best, peak=out["runs"][best]["peak"],
                            mean=float(grid[best]))
  else:
    out["best_grid"] = dict(name=None, peak=float("nan"), mean=float("nan"))
  out["wall_seconds"] = time.perf_counter() - start_time
  name = common.result_name("char_gpt", args.quick)
  path = common.write_results(name, out, markdown(out), args.out)
  if panels:
    plots.decision_panels(
        panels, args.out / f"{name}.png", smooth=20, cols=2,
        title="Character GPT: ExpTest's loss (20-step mean), rate and decisions")
  print(f"wrote {path}")
  return out


if __name__ == "__main__":
  main()
