"""Small helpers shared by the tests (instead of copies in every file)."""
import contextlib
import logging

import jax
import numpy as np


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
