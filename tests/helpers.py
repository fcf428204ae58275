"""Small helpers shared by the tests (instead of copies in every file)."""
import contextlib
import importlib
import itertools
import json
import logging

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


def sweep(values, default):
  """The parameters of a property sweep in two tiers: every case of `values`
  runs in ``make test-all``; those not in `default` are marked ``slow``, so
  ``make test`` (``-m "not slow"``) runs the default ones only.

  Args:
    values: every case of the sweep; a plain tuple per case for a
      parametrization of several names (``"inner, dtype"``).
    default: the cases of ``make test``: a few that span the sweep (each
      value of each name at least once, where the cases are tuples).

  Returns:
    A list for ``pytest.mark.parametrize``.

  Raises:
    ValueError: a default case that is not in `values`.

  Examples:
    >>> [(p.values, [m.name for m in p.marks])
    ...  for p in sweep([1, 2, 3], default=[1, 3])]
    [((1,), []), ((2,), ['slow']), ((3,), [])]
  """
  missing = [v for v in default if v not in values]
  if missing:
    raise ValueError(f"default cases {missing} are not in the sweep {values}")
  return [
      # A plain tuple is a case of several names; a NamedTuple (an optax
      # transformation) is one value.
      pytest.param(*(v if type(v) is tuple else (v,)),  # noqa: E721
                   marks=() if v in default else pytest.mark.slow)
      for v in values
  ]


def diagonal(*axes):
  """Cases of a sweep over the product of `axes` that take each value of
  each axis at least once: ``max(len(axis))`` cases, the ``i``-th taking
  each axis's ``i % len(axis)``-th value.

  Examples:
    >>> diagonal(["a", "b"], [1, 2, 3])
    [('a', 1), ('b', 2), ('a', 3)]
  """
  return [tuple(axis[i % len(axis)] for axis in axes)
          for i in range(max(map(len, axes)))]


def product(*axes):
  """Every case of the product of `axes`, as tuples (`sweep`'s `values`)."""
  return list(itertools.product(*axes))


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
