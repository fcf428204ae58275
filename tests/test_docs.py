"""Every public symbol is documented with an example, and the examples run;
the README's snippets run, its results block is the report's, its links land."""
import doctest
import inspect
import json
import re

import jax.numpy as jnp
import pytest

import optax_exptest
from optax_exptest import (
    datasets, flax_utils, integrations, plotting, policies, stats, zooming,
)
from readme_snippets import README, ROOT, SNIPPETS, MAX_PROSE_WORDS, check_output, prose_words

MODULES = (
    optax_exptest, stats, datasets, zooming, flax_utils, integrations, plotting,
    policies,
)

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
  if module_name == plotting.__name__:
    pytest.importorskip("matplotlib")
  ran = 0
  for test in tests:
    result = runner.run(test)
    ran += result.attempted
    assert result.failed == 0, f"{module_name}.{name}: {result.failed} example(s) failed"
  assert ran > 0


# The README: its snippets run and print what they found, its results block
# is the report's, and its links into the design land on a heading.


def test_readme_has_snippets():
  # Three: momentum, Flax, zooming. A fence that stops matching fails here.
  assert len(SNIPPETS) == 3, [s.splitlines()[0] for s in SNIPPETS]


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs_and_prints_what_it_found(index, tmp_path, monkeypatch, capsys):
  code = SNIPPETS[index]
  if "from flax" in code:
    pytest.importorskip("flax")
  monkeypatch.chdir(tmp_path)  # a snippet may write files
  namespace = {}
  exec(compile(code, f"README.md snippet {index}", "exec"), namespace)  # pylint: disable=exec-used
  printed = check_output(index, capsys.readouterr().out)
  # What it printed is the trained result itself.
  if "opt_state" in namespace:
    summary = optax_exptest.exptest_summary(namespace["opt_state"])
    loss = float(namespace["loss_fn"](namespace["params"], namespace["x"], namespace["y"]))
    assert printed["loss"] == pytest.approx(loss, rel=0.1, abs=1e-30)
  if "optimizer" in namespace:
    summary = optax_exptest.exptest_summary(namespace["optimizer"])
    assert float(namespace["losses"][-1]) < 0.5 * float(jnp.var(namespace["y"]))
  if "summary" in namespace:
    assert printed["rate"] == pytest.approx(summary["learning_rate"], rel=1e-2)
    assert printed["cuts"] == summary["num_cuts"]
    assert printed["phase"] == summary["phase_name"]
    assert printed["bound"] == pytest.approx(namespace["eta"], rel=1e-2)
  if "search" in namespace:
    assert printed["rate"] == pytest.approx(namespace["best_rate"], rel=1e-2)
    assert printed["reward"] == pytest.approx(namespace["best_reward"], abs=1e-3)


def test_readme_reads_in_five_minutes():
  """At most 1,000 words of prose outside code blocks and tables; what does
  not fit goes to docs/ with a link."""
  assert prose_words(README) <= MAX_PROSE_WORDS, prose_words(README)


def test_readme_results_block_is_the_reports():
  """Rebuild it with `python -m benchmarks report` after changing the JSON."""
  from benchmarks.lib import report  # pylint: disable=g-import-not-at-top
  assert report.readme_results(README) == report.readme_block().strip(), (
      "README.md's results block is out of date with benchmarks/results/:"
      " run `python -m benchmarks report`"
  )


def _github_anchor(heading: str) -> str:
  text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
  return text.replace(" ", "-")


def test_readme_links_into_the_design_land_on_headings():
  design = (ROOT / "docs" / "design.md").read_text()
  anchors = {_github_anchor(h) for h in re.findall(r"^#+ (.*)$", design, re.M)}
  links = re.findall(r"docs/design\.md#([\w\-]+)", README)
  assert links
  for link in links:
    assert link in anchors, f"README links to docs/design.md#{link}, no such heading"


def test_report_adds_unlisted_sections_and_marks_stale_runs(tmp_path, monkeypatch):
  """A new experiment's Markdown gets its section; a stale run's rows are
  marked until its JSON carries a later date."""
  from benchmarks.lib import report  # pylint: disable=g-import-not-at-top
  (tmp_path / "bad_batches.md").write_text("# Bad batches\n\nbody of the new section\n")
  entry = report.Stale(
      run="2026-11-22", change="a change of the library",
      rows=("exptest_momentum",), current=("inner_rules", "california"),
      cost="about 20 minutes on two cores")
  monkeypatch.setitem(report.STALE, "california", entry)
  label = "ExpTest w/ mom."
  (tmp_path / "california.md").write_text(
      f"# Table 3\n\n| optimizer | 1 x eta_max |\n|---|---|\n| {label} | 0.5 |\n")
  (tmp_path / "california.json").write_text(json.dumps({"machine": {}}))
  text = report.build(tmp_path)
  assert "## Bad batches\n\nbody of the new section" in text
  assert f"| {label} (stale) | 0.5 |" in text and entry.run in text
  (tmp_path / "california.json").write_text(
      json.dumps({"machine": {"date": "2099-01-01"}}))
  text = report.build(tmp_path)
  assert f"| {label} | 0.5 |" in text and "Stale rows" not in text
