"""Every public symbol is documented with an example, and the examples run."""
import doctest
import inspect

import pytest

import optax_exptest
from optax_exptest import datasets, flax_utils, integrations, stats, zooming

MODULES = (optax_exptest, stats, datasets, zooming, flax_utils, integrations)

# Functions and classes; modules are checked apart, constants (e.g.
# `datasets.CHECKSUMS`) are documented where they are defined.
PUBLIC = sorted(
    (module.__name__, name)
    for module in MODULES
    for name in module.__all__
    if callable(getattr(module, name)) and not inspect.ismodule(getattr(module, name))
)


def _symbol(module_name, name):
  module = {m.__name__: m for m in MODULES}
  return getattr(module[module_name], name)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_public_module_has_a_docstring(module):
  assert (module.__doc__ or "").strip(), f"{module.__name__} has no docstring"


@pytest.mark.parametrize("module_name, name", PUBLIC)
def test_public_symbol_has_a_docstring_with_an_example(module_name, name):
  obj = _symbol(module_name, name)
  doc = inspect.getdoc(obj) or ""
  assert doc.strip(), f"{module_name}.{name} has no docstring"
  assert ">>>" in doc, f"{module_name}.{name}'s docstring has no example"


@pytest.mark.parametrize("module_name, name", PUBLIC)
def test_docstring_examples_run(module_name, name):
  obj = _symbol(module_name, name)
  finder = doctest.DocTestFinder(recurse=False)
  # Empty globals: every example imports what it uses, as a reader would.
  tests = finder.find(obj, name, globs={})
  runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  ran = 0
  for test in tests:
    result = runner.run(test)
    ran += result.attempted
    assert result.failed == 0, f"{module_name}.{name}: {result.failed} example(s) failed"
  assert ran > 0
