"""AlgoPerf's MNIST workload: steps and seconds to 0.97 validation accuracy.

The workload of `mlcommons/algorithmic-efficiency` (`algoperf/workloads/
mnist`): an MLP 784 -> 128 -> sigmoid -> 10 (Flax's default initialisation:
LeCun-normal kernels, zero biases), cross-entropy, pixels scaled to [0, 1]
and normalised by 0.1307 / 0.3081; the first 50,000 training images train,
the last 10,000 validate; target validation accuracy 0.97; step hint 7813
(10 epochs at batch 64). Every run evaluates on the validation images every
`EVAL_EVERY` steps inside its compiled chunk (`trainers.train_in_chunks`).

Rows:

* ExpTest (batch 64, 7813 steps) with inner None, `optax.trace(0.9)` and
  `optax.scale_by_adam()`, started at `lr_upper_bound(x)` of the training
  images and at `lr_upper_bound_from_model` (the Hessian's bound on 4
  batches of 64 at the initial parameters). `--exptest-kwargs` passes
  options to `optax_exptest.exptest` (`optimizers.build_exptest`).
* The AlgoPerf self-tuning NadamW baseline at its published settings
  (`reference_algorithms/qualification_baselines/self_tuning`: lr
  1.7486e-3, b1 1 - 0.0673, b2 0.99552, weight decay 0.0812, linear warmup
  over 2 % of the budget then cosine to 0, batch 16): `optax.nadamw`, its
  budget 10 epochs at batch 16 (31,250 steps; the step hint scaled to the
  same epochs).
* Schedule-free AdamW at the settings of the AlgoPerf v0.5 self-tuning
  winner (`schedule_free_adamw`, Defazio et al.; its `HPARAMS`: lr 0.0025,
  b1 0.9, b2 0.99552, weight decay 0.0812, warmup `0.02 * 0.75` of the step
  hint, weight_lr_power 2, batch 16 on MNIST): `optax.contrib.
  schedule_free_adamw`, evaluated at its averaged parameters. optax's has no
  polynomial weight `r` (the submission's 0.75) and we add no label
  smoothing (its 0.2).
* Plain SGD at a constant 1.0 (batch 64), the reference a user would try.

Run: `python -m benchmarks algoperf_mnist [--seeds 3] [--quick]
[--exptest-kwargs JSON]`.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_exptest
from optax_exptest import plotting
from benchmarks.lib import common, optimizers, plots, trainers

TARGET = 0.97
STEP_HINT = 7813  # 10 epochs at batch 64
EPOCHS = 10
EVAL_EVERY = 100
MEAN, STD = 0.1307, 0.3081
TRAIN = 50_000

# The published self-tuning NadamW baseline and the schedule-free winner.
NADAMW = dict(learning_rate=1.7486e-3, b1=1 - 0.0673, b2=0.99552,
              weight_decay=0.0812, warmup=0.02, batch_size=16)
SCHEDULE_FREE = dict(learning_rate=0.0025, b1=0.9, b2=0.99552,
                     weight_decay=0.0812, warmup=0.02 * 0.75,
                     weight_lr_power=2.0, batch_size=16)
EXPTEST_INNERS = ["sgd", "momentum", "adam"]
EXPTEST_STARTS = ["lr_upper_bound", "lr_upper_bound_from_model"]


def load(quick: bool = False):
  """Train and validation arrays as the workload splits and scales them."""
  mnist = optax_exptest.datasets.load_mnist()
  x = (mnist["train_images"].reshape(-1, 784).astype(np.float32) / 255 - MEAN) / STD
  y = mnist["train_labels"].astype(np.int32)
  x_train, y_train, x_val, y_val = x[:TRAIN], y[:TRAIN], x[TRAIN:], y[TRAIN:]
  if quick:
    x_train, y_train, x_val, y_val = x_train[:2048], y_train[:2048], x_val[:500], y_val[:500]
  return x_train, y_train, x_val, y_val


def init_mlp(key):
  """Flax's `nn.Dense` defaults: LeCun-normal (truncated) kernels, zero biases."""
  k1, k2 = jax.random.split(key)
  init = jax.nn.initializers.lecun_normal()
  return dict(w1=init(k1, (784, 128)), b1=jnp.zeros(128),
              w2=init(k2, (128, 10)), b2=jnp.zeros(10))


def logits_fn(params, x):
  h = jax.nn.sigmoid(x @ params["w1"] + params["b1"])
  return h @ params["w2"] + params["b2"]


def loss_fn(params, batch):
  x, y = batch
  return optax.softmax_cross_entropy_with_integer_labels(logits_fn(params, x), y).mean()


def _warmup_cosine(peak, steps, warmup_fraction):
  warmup = max(1, int(warmup_fraction * steps))
  return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, steps, 0.0)


def configs(eta_x: float, eta_model: float, exptest_kwargs: dict):
  """`name -> (label, make_tx(steps), batch_size, exptest start or None)`."""
  out = {}
  for start, eta in zip(EXPTEST_STARTS, (eta_x, eta_model)):
    for inner in EXPTEST_INNERS:
      out[f"exptest_{inner}_{start}"] = (
          f"ExpTest, inner {inner}, from {start}",
          lambda steps, eta=eta, inner=inner: optimizers.build_exptest(
              eta, inner, **exptest_kwargs),
          64, eta)
  n = NADAMW
  out["nadamw"] = (
      "NadamW (AlgoPerf self-tuning baseline)",
      lambda steps: optax.nadamw(
          _warmup_cosine(n["learning_rate"], steps, n["warmup"]), b1=n["b1"],
          b2=n["b2"], weight_decay=n["weight_decay"]),
      n["batch_size"], None)
  sf = SCHEDULE_FREE
  out["schedule_free_adamw"] = (
      "Schedule-free AdamW (AlgoPerf 2024 self-tuning winner)",
      lambda steps: optax.contrib.schedule_free_adamw(
          sf["learning_rate"], warmup_steps=max(1, int(sf["warmup"] * steps)),
          b1=sf["b1"], b2=sf["b2"], weight_decay=sf["weight_decay"],
          weight_lr_power=sf["weight_lr_power"]),
      sf["batch_size"], None)
  out["sgd_1.0"] = ("SGD, constant 1.0", lambda steps: optax.sgd(1.0), 64, None)
  return out


def program(make_tx, batch_size, data, *, epochs, evaluated_at_average):
  """`run(seed)` of one configuration: its seeds share one compilation.

  `run` returns a `trainers.ChunkedRun` whose records are the loss, ExpTest's
  rate and decision of every step.
  """
  n = data[0].shape[0]
  steps_per_epoch = n // batch_size
  steps = epochs * steps_per_epoch
  tx = optax.with_extra_args_support(make_tx(steps))

  def step(carry, i, shared):
    params, state = carry
    x, y, _, _, order = shared
    idx = order[i]
    value, grads = jax.value_and_grad(loss_fn)(params, (x[idx], y[idx]))
    updates, state = tx.update(grads, state, params, value=value)
    rate, decision = trainers.exptest_fields(state)
    return (optax.apply_updates(params, updates), state), (value, rate, decision)

  def evaluate(carry, shared):
    params, state = carry
    if evaluated_at_average:
      params = optax.contrib.schedule_free_eval_params(state, params)
    _, _, x, y, _ = shared
    return jnp.mean(jnp.argmax(logits_fn(params, x), -1) == y)

  compiled, arrays = {}, tuple(jnp.asarray(a) for a in data)

  def run(seed):
    init_key, data_key = jax.random.split(jax.random.PRNGKey(seed))
    # Each epoch's order, drawn before the run.
    order = np.stack([np.asarray(jax.random.permutation(
        jax.random.fold_in(data_key, e), n))[: steps_per_epoch * batch_size]
        for e in range(epochs)]).reshape(-1, batch_size)
    params = init_mlp(init_key)
    return trainers.train_in_chunks(
        step, evaluate, (params, tx.init(params)), steps=steps,
        eval_every=EVAL_EVERY, shared=arrays + (jnp.asarray(order, jnp.int32),),
        compiled=compiled)

  return run


def bounds(data, seed: int = 0, batch_size: int = 64, num_iterations: int = 8):
  """ExpTest's two starts: the input bound and the model's (4 batches; a
  smoke run takes 3 Lanczos steps, whose unrolled compilation is most of
  the bound's time)."""
  x_train, y_train = data[0], data[1]
  eta_x = float(optax_exptest.lr_upper_bound(x_train))
  params = init_mlp(jax.random.split(jax.random.PRNGKey(seed))[0])
  batches = [(jnp.asarray(x_train[i * batch_size:(i + 1) * batch_size]),
              jnp.asarray(y_train[i * batch_size:(i + 1) * batch_size])) for i in range(4)]
  eta_model = float(optax_exptest.lr_upper_bound_from_model(
      loss_fn, params, batches, num_iterations=num_iterations))
  return eta_x, eta_model


def _median(values):
  v = np.asarray(values, float)
  return float(np.median(v)) if np.isfinite(v).all() else float("nan")


def markdown(out) -> str:
  lines = [
      "# AlgoPerf MNIST: steps and seconds to 0.97 validation accuracy", "",
      f"AlgoPerf's MNIST workload (MLP 784-128-sigmoid-10, 50,000 training and"
      f" 10,000 validation images, target {TARGET}), {len(out['seeds'])} seeds,"
      f" {EPOCHS} epochs each (the step hint {STEP_HINT} at batch 64; batch-16"
      " rows run the same epochs). Validation accuracy every"
      f" {EVAL_EVERY} steps, on device; 'steps/seconds to target': the first"
      " evaluation at or above it ('-': never), seconds of training and"
      " evaluation since the start, compilation excluded. Starts:"
      f" `lr_upper_bound(x)` = {out['eta_x']:.4g},"
      f" `lr_upper_bound_from_model` = {out['eta_model']:.4g}."
      f" Measured in {out['wall_seconds']:.0f} s.", "",
  ]
  headers = ["optimizer", "batch", "steps to 0.97 (per seed)", "median steps",
             "seconds to 0.97 (per seed)", "final val. acc. (per seed)",
             "largest / final rate (per seed)"]
  rows = []
  fmt = lambda v, f: "-" if not np.isfinite(v) else format(v, f)
  for name, r in out["runs"].items():
    rates = ("" if r.get("largest_rate") is None else ", ".join(
        f"{a:.3g} / {b:.3g}" for a, b in zip(r["largest_rate"], r["final_rate"])))
    rows.append([
        r["label"], r["batch_size"],
        ", ".join(fmt(s, ".0f") for s in r["steps_to_target"]),
        fmt(r["median_steps_to_target"], ".0f"),
        ", ".join(fmt(s, ".1f") for s in r["seconds_to_target"]),
        ", ".join(f"{a:.4f}" for a in r["final_accuracy"]), rates])
  lines.append(common.markdown_table(headers, rows))
  lines += ["", "ExpTest's decisions per seed (step: decision, rate after):", ""]
  for name, r in out["runs"].items():
    if "decisions" in r:
      per_seed = ["; ".join(f"{d['step']}: {d['decision']} {d['rate']:.3g}"
                            for d in seed) or "none" for seed in r["decisions"]]
      lines.append(f"- {r['label']}: " + " | ".join(per_seed))
  return "\n".join(lines)


def _decision_list(decisions, rates):
  """The steps where ExpTest decided something other than 'decreasing'."""
  marked = plotting.MARKED
  return [dict(step=int(i) + 1, decision=optax_exptest.Decision(int(d)).name.lower(),
               rate=float(rates[i]))
          for i, d in enumerate(decisions) if optax_exptest.Decision(int(d)) in marked]


def main(argv=None):
  parser = common.parser(__doc__, seeds=3)
  common.add_exptest_kwargs(parser)
  parser.add_argument("--names", nargs="*", default=None,
                      help="run only these rows (default: all)")
  args = parser.parse_args(argv)
  start_time = time.perf_counter()
  data = load(args.quick)
  epochs = 1 if args.quick else EPOCHS
  seeds = list(range(1 if args.quick else args.seeds))
  eta_x, eta_model = bounds(data, num_iterations=3 if args.quick else 8)
  table = configs(eta_x, eta_model, args.exptest_kwargs)
  names = args.names or (
      ["exptest_sgd_lr_upper_bound", "schedule_free_adamw"]
      if args.quick else list(table))
  out = dict(seeds=seeds, eta_x=eta_x, eta_model=eta_model, target=TARGET,
             epochs=epochs, eval_every=EVAL_EVERY, exptest_kwargs=args.exptest_kwargs,
             nadamw=NADAMW, schedule_free_adamw=SCHEDULE_FREE, runs={})
  panels = []
  for name in names:
    label, make_tx, batch_size, start = table[name]
    record = dict(label=label, batch_size=batch_size, steps_to_target=[],
                  seconds_to_target=[], final_accuracy=[], seconds=[])
    run_seed = program(make_tx, batch_size, data, epochs=epochs,
                       evaluated_at_average=name == "schedule_free_adamw")
    for seed in seeds:
      run = run_seed(seed)
      losses, rates, decisions = run.records
      acc = np.asarray(run.evals, float)
      record["steps_to_target"].append(trainers.first_reaching(acc, TARGET, run.eval_steps))
      record["seconds_to_target"].append(trainers.first_reaching(acc, TARGET, run.seconds))
      record["final_accuracy"].append(float(acc[-1]))
      record["seconds"].append(float(run.seconds[-1]))
      if start is not None:
        summary = optax_exptest.exptest_summary(run.carry[1])
        record.setdefault("start_rate", start)
        record.setdefault("largest_rate", []).append(float(np.nanmax(rates)))
        record.setdefault("final_rate", []).append(float(summary["learning_rate"]))
        record.setdefault("cuts", []).append(int(summary["num_cuts"]))
        record.setdefault("decisions", []).append(_decision_list(decisions, rates))
        # Every 10th step's loss: the figure's curve, a tenth of the JSON.
        record.setdefault("loss_every_10", []).append(losses[::10].tolist())
        if seed == seeds[0]:
          panels.append(dict(label=f"{label}, seed {seed}", losses=losses,
                             rates=rates, decisions=decisions))
      print(name, seed, record["final_accuracy"][-1], record["steps_to_target"][-1],
            flush=True)
    record["median_steps_to_target"] = _median(record["steps_to_target"])
    record["median_seconds_to_target"] = _median(record["seconds_to_target"])
    out["runs"][name] = record
  out["wall_seconds"] = time.perf_counter() - start_time
  name = common.result_name("algoperf_mnist", args.quick)
  path = common.write_results(name, out, markdown(out), args.out)
  if panels:
    plots.decision_panels(
        panels, args.out / f"{name}.png", smooth=50, logy=True,
        title="AlgoPerf MNIST: ExpTest's loss (50-step mean), rate and decisions")
  print(f"wrote {path}")
  return out


if __name__ == "__main__":
  main()
