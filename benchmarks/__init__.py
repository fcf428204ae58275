"""Benchmarks and experiments of optax_exptest; run `python -m benchmarks --help`.

One module per experiment; their shared code (problems, trainers, optimizers,
plots, the report) is the `benchmarks.lib` package.

On the CPU, each core becomes one JAX device (unless XLA_FLAGS says
otherwise), so that a batch of vmapped training runs can be sharded along its
arm axis over all cores: small models otherwise leave all but one idle.
"""

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (
      os.environ.get("XLA_FLAGS", "")
      + f" --xla_force_host_platform_device_count={os.cpu_count() or 1}"
  ).strip()
