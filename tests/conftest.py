"""Shared test configuration and helpers.

Every test module can request the ``x64`` fixture to run once in float32 and once
with ``jax_enable_x64`` on, the way optax's tests cover both precisions.

How `make test` spreads the tests over its two pytest-xdist workers
(``--dist loadfile --no-loadscope-reorder``): a file's tests run on one worker,
so that what they share (module fixtures such as the local Ray instance, jitted
functions at module level) is built once, and the files holding a test marked
``slow`` (a benchmark's ``--quick`` run, a notebook, a run in subprocesses) are
handed out first, the other files after them, the most tests first: a worker
is then not left with a file of half-minute tests while the other one is idle
(xdist's own order, by test count, put those files last). Without xdist the
order is pytest's.

Slow property sweeps run a few of their cases by default and every case with
``OPTAX_EXPTEST_FULL=1`` in the environment (see `helpers.sweep`); the other cases
are reported as skipped, with that variable named.
"""
import os

# Eight host devices for the sharding tests; must be set before jax is imported.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(params=[False, True], ids=["f32", "x64"])
def x64(request):
  """Runs the test body with x64 disabled and enabled."""
  with jax.enable_x64(request.param):
    yield request.param


def _scope_order(items):
  """Each test's file, ranked: the files holding a `slow` test first (in
  collection order), then the others, the most tests first."""
  slow, count, first = set(), {}, {}
  for item in items:
    name = item.path.name
    count[name] = count.get(name, 0) + 1
    first.setdefault(name, len(first))
    if item.get_closest_marker("slow") is not None:
      slow.add(name)
  return lambda item: (item.path.name not in slow,
                       0 if item.path.name in slow else -count[item.path.name],
                       first[item.path.name])


def pytest_collection_modifyitems(config, items):
  # Only in xdist's workers: xdist hands out whole files in the order its
  # workers collected them (`--no-loadscope-reorder`).
  if hasattr(config, "workerinput"):
    items.sort(key=_scope_order(items))  # Stable: a file keeps its own order.
