"""Smoke runs of the ExpTest experiments (`--quick`), so that they cannot rot."""
import importlib
import json

import pytest

from benchmarks import __main__ as runner

EXPERIMENTS = [
    "mnist_logreg", "alpha_beta", "batch_size", "california", "cifar10",
    "step_time", "demo_seeds", "curvature_bound",
]


def test_runner_lists_the_experiments():
  assert set(EXPERIMENTS) <= set(runner.experiments())
  assert "common" not in runner.experiments()


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_quick_run_writes_results(name, tmp_path):
  module = importlib.import_module(f"benchmarks.{name}")
  result = module.main(["--quick", "--out", str(tmp_path)])
  record = json.loads((tmp_path / f"{name}_quick.json").read_text())
  assert record["machine"]["jax"]
  assert (tmp_path / f"{name}_quick.md").read_text().startswith("# ")
  # Quick runs never touch the committed summary.
  assert not (tmp_path / "summary.json").exists()
  if name == "mnist_logreg":
    # Every optimizer has a cell for every factor it runs at.
    assert set(result) == {"exptest", "sgd"}
    assert set(result["sgd"]) == {"0.1", "1.0"} and set(result["exptest"]) == {"none"}
    for cell in (c for cells in result.values() for c in cells.values()):
      assert cell["n"] + cell["n_diverged"] == 2 and 0 <= cell["mean"] <= 100
    assert (tmp_path / "mnist_logreg_quick.png").stat().st_size > 10_000
  if name == "curvature_bound":
    assert set(result) == {"mnist_logreg", "california_mlp", "flax_cnn",
                           "token_bag"}
    for task in result.values():
      assert 0 < task["model_bound"] < 10 and task["best_rate"] in task["rates"]
      assert task["products"] >= 1 and task["bound_seconds"] > 0


def test_report_assembles_the_committed_results(tmp_path):
  from benchmarks import common, report
  text = report.build(common.RESULTS)
  for title in ("Table 1", "Table 2", "Table 3", "Mini-batch size", "Wall time"):
    assert title in text
  assert "paper:" in text and "## Where and why we differ" in text
  readme = tmp_path / "README.md"
  readme.write_text("intro\n" + "\n".join(report.MARKERS) + "\nrest\n")
  report.update_readme(common.RESULTS, readme)
  updated = readme.read_text()
  assert "| ExpTest | none |" in updated and updated.endswith("rest\n")
