"""Shared test configuration and helpers.

Every test module can request the ``x64`` fixture to run once in float32 and once
with ``jax_enable_x64`` on, the way optax's tests cover both precisions (the x64
case in ``make test-all``).

Two tiers, by the ``slow`` marker: ``make test`` runs ``-m "not slow"``, ``make
test-all`` (CI) everything. Property sweeps (`helpers.sweep`) run a few
spanning cases in ``make test`` and mark the others slow.

How both tiers spread the tests over two pytest-xdist workers (``--dist
loadfile --no-loadscope-reorder``): a file's tests run on one worker, so that
what they share (module fixtures such as the local Ray instance, jitted
functions at module level) is built once, and the files holding the most tests
marked ``slow`` (a benchmark's ``--quick`` run, a notebook, a run in
subprocesses) are handed out first, then the files of the most tests: a worker
is then not left with a file of half-minute tests while the other one is idle
(xdist's own order, by test count, put those files last). Without xdist the
order is pytest's.
"""
import os
import pathlib

# Eight host devices for the sharding tests; must be set before jax is imported.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

# JAX's persistent compilation cache, in pytest's cache folder (git-ignored,
# removed by `make clean`; JAX keys each entry on the program and its own
# version). Compiling is most of the suite's time: a second run compiles
# only what a change touched, and programs that tests (and their
# subprocesses, through the environment) share compile once.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    str(pathlib.Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402
import pytest  # noqa: E402


# The x64 case is in `make test-all` only (marked slow): it compiles every
# program a second time, a sixth of the fast tier's time, for the bugs of one
# precision, which the float32 case and CI's full tier still catch.
@pytest.fixture(params=[False, pytest.param(True, marks=pytest.mark.slow)],
                ids=["f32", "x64"])
def x64(request):
  """Runs the test body with x64 disabled and enabled."""
  with jax.enable_x64(request.param):
    yield request.param


def _scope_order(items):
  """Each test's file, ranked: the most tests marked `slow` first, then the
  most tests (collection order among equals)."""
  slow, count, first = {}, {}, {}
  for item in items:
    name = item.path.name
    count[name] = count.get(name, 0) + 1
    first.setdefault(name, len(first))
    slow[name] = slow.get(name, 0) + (item.get_closest_marker("slow") is not None)
  return lambda item: (-slow[item.path.name], -count[item.path.name],
                       first[item.path.name])


def pytest_collection_modifyitems(config, items):
  # Only in xdist's workers: xdist hands out whole files in the order its
  # workers collected them (`--no-loadscope-reorder`).
  if hasattr(config, "workerinput"):
    items.sort(key=_scope_order(items))  # Stable: a file keeps its own order.
