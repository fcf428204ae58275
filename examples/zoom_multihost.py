"""A zooming search whose arms are sharded over the devices of several processes.

Every process runs this same script (same arguments except its process id):
`jax.distributed.initialize` joins them, `jax.devices()` then lists the
devices of all processes, and the mesh built from them shards each round's
arms over all of them. Every process calls the same `zoom`; each trains the
arms on its own devices, the rewards are gathered to all, every process keeps
an identical search, and only process 0 writes the checkpoint.

On one machine, as local processes on CPU (what `docs/distributed.md` shows):

    python examples/zoom_multihost.py --launch 2 --devices-per-process 4

starts 2 processes of 4 CPU devices each (8 arms per round, one per device)
and waits for them. On a cluster, start one process per host yourself:

    python examples/zoom_multihost.py --coordinator HOST0:1234 \\
        --num-processes 4 --process-id $RANK

Without `--num-processes` (or with 1), it runs in one process, without
`jax.distributed`.
"""

import argparse
import json
import os
import subprocess
import sys


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--launch", type=int, default=0,
                      help="start this many local processes and wait for them")
  parser.add_argument("--coordinator", default="localhost:12355")
  parser.add_argument("--num-processes", type=int, default=1)
  parser.add_argument("--process-id", type=int, default=0)
  parser.add_argument("--devices-per-process", type=int, default=0,
                      help="CPU devices per process (0: leave XLA_FLAGS alone)")
  parser.add_argument("--rounds", type=int, default=4)
  parser.add_argument("--arms-per-round", type=int, default=0,
                      help="default: one arm per device of all processes")
  parser.add_argument("--checkpoint", default=None)
  parser.add_argument("--result", default=None,
                      help="process 0 writes the search's state here as JSON")
  return parser.parse_args(argv)


def launch(args, argv):
  """Starts `args.launch` local processes running this script; returns codes."""
  rest = [a for a in argv if not a.startswith("--launch=")]
  if "--launch" in rest:  # `--launch N` as two tokens
    i = rest.index("--launch")
    rest = rest[:i] + rest[i + 2:]
  procs = [
      subprocess.Popen([sys.executable, __file__, *rest,
                        "--num-processes", str(args.launch), "--process-id", str(i)])
      for i in range(args.launch)
  ]
  return [p.wait() for p in procs]


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  args = parse_args(argv)
  if args.launch:
    codes = launch(args, argv)
    if any(codes):
      raise SystemExit(f"a process failed: exit codes {codes}")
    return None
  if args.devices_per_process:
    os.environ["XLA_FLAGS"] = (
        f"--xla_force_host_platform_device_count={args.devices_per_process}")

  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  # pylint: disable-next=g-import-not-at-top
  from optax_exptest.zooming import loss_reward, zoom, ZoomingSearch

  if args.num_processes > 1:
    # Cross-process collectives of CPU devices go through gloo (the setting
    # only concerns CPU devices; GPUs and TPUs use their own).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=args.coordinator,
                               num_processes=args.num_processes,
                               process_id=args.process_id)

  # The same data on every process: a small teacher-student regression.
  kx, kt = jax.random.split(jax.random.PRNGKey(0))
  x = jax.random.normal(kx, (512, 8))
  y = jnp.tanh(x @ jax.random.normal(kt, (8,)))

  def train_fn(learning_rate, key):
    w = 0.1 * jax.random.normal(key, (8, 16))
    v = jnp.zeros(16)
    loss = lambda p: jnp.mean((jnp.tanh(x @ p[0]) @ p[1] - y) ** 2)

    def step(p, _):
      value, grads = jax.value_and_grad(loss)(p)
      return jax.tree.map(lambda a, g: a - learning_rate * g, p, grads), value

    params, _ = jax.lax.scan(step, (w, v), None, length=50)
    return loss_reward(loss(params), jnp.var(y))

  mesh = jax.make_mesh((jax.device_count(),), ("arms",))
  arms = args.arms_per_round or jax.device_count()
  search = ZoomingSearch(1e-3, 10.0, scale="log", horizon=args.rounds * arms,
                         radius_scale=0.1)
  search = zoom(train_fn, search, rounds=args.rounds, arms_per_round=arms,
                key=jax.random.key(0), mesh=mesh, checkpoint=args.checkpoint,
                progress=jax.process_index() == 0)
  lr, reward = search.best
  print(f"process {jax.process_index()}/{jax.process_count()}:"
        f" {len(jax.local_devices())} local of {jax.device_count()} devices,"
        f" {search.num_pulls} pulls, best learning rate {lr:.4g}"
        f" (reward {reward:.4f})", flush=True)
  if args.result and jax.process_index() == 0:
    with open(args.result, "w") as f:
      json.dump(search.state_dict(), f)
  if args.num_processes > 1:
    jax.distributed.shutdown()
  return search


if __name__ == "__main__":
  main()
