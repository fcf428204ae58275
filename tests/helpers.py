"""Small helpers shared by the tests (instead of copies in every file)."""
import contextlib
import importlib
import json
import logging
import os

import jax
import numpy as np
import pytest


def assert_trees_all_close(a, b, rtol=1e-6, atol=0.0):
  """Asserts two pytrees have the same structure and close leaves."""
  la, ta = jax.tree.flatten(a)
  lb, tb = jax.tree.flatten(b)
  assert ta == tb, f"tree structures differ: {ta} != {tb}"
  for x, y in zip(la, lb):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


@contextlib.contextmanager
def log_compilations():
  """Collects the names of functions XLA compiles inside the block.

  Yields a list that fills with one entry per compilation, as optax's
  `_common_test` does to assert that a second jitted call does not recompile.
  """
  compiled = []

  class _Handler(logging.Handler):
    def emit(self, record):
      msg = record.getMessage()
      if "Compiling" in msg or "Finished XLA compilation" in msg:
        compiled.append(msg)

  logger = logging.getLogger("jax")
  handler = _Handler()
  logger.addHandler(handler)
  old_level = logger.level
  logger.setLevel(logging.DEBUG)
  try:
    with jax.log_compiles(True):
      yield compiled
  finally:
    logger.removeHandler(handler)
    logger.setLevel(old_level)


# Every case of the slow property sweeps (`sweep`), not only the default ones.
FULL = os.environ.get("OPTAX_EXPTEST_FULL", "") not in ("", "0")


def sweep(values, default):
  """The parameters of a slow property sweep: all `values`, of which those not
  in `default` are skipped unless ``OPTAX_EXPTEST_FULL=1``.

  Args:
    values: every case of the sweep.
    default: the cases that run by default (a few that span the sweep).

  Returns:
    A list for ``pytest.mark.parametrize``.

  Examples:
    >>> [p.values for p in sweep([1, 2, 3], default=[1, 3])]
    [(1,), (2,), (3,)]
  """
  missing = [v for v in default if v not in values]
  if missing:
    raise ValueError(f"default cases {missing} are not in the sweep {values}")
  skip = pytest.mark.skipif(
      not FULL, reason="a case of the full sweep: set OPTAX_EXPTEST_FULL=1")
  return [pytest.param(v, marks=() if v in default else skip) for v in values]


def run_quick(name, tmp_path):
  """Runs `name --quick` into `tmp_path`; returns its result and its JSON."""
  module = importlib.import_module(f"benchmarks.{name}")
  result = module.main(["--quick", "--out", str(tmp_path)])
  record = json.loads((tmp_path / f"{name}_quick.json").read_text())
  assert record["machine"]["jax"]
  assert (tmp_path / f"{name}_quick.md").read_text().startswith("# ")
  # Quick runs never touch the committed summary.
  assert not (tmp_path / "summary.json").exists()
  return result, record
