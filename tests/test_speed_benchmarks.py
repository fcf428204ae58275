"""Smoke runs of the speed benchmarks (`step_time`, `gpu_suite`, `import_time`, `--quick`).

Beside tests/test_benchmarks.py, so that pytest-xdist's `loadfile` runs the
two files on different workers.
"""
import json

import pytest

from test_benchmarks import SPEED_EXPERIMENTS
from helpers import run_quick


@pytest.mark.slow
@pytest.mark.parametrize("name", SPEED_EXPERIMENTS)
def test_quick_run_reports_ratios(name, tmp_path):
  result, record = run_quick(name, tmp_path)
  for setting in result.values():
    ratios = setting["ratios"]
    assert ratios["exptest"]["median"] > 0, (setting, ratios)
  if name == "step_time":
    assert "sgd_checked" in result["logreg single"]["ratios"]
    assert {"logreg vmap 2 rates, shared batches", "cnn single",
            "california single"} <= set(result)
    sweep = result["logreg vmap 2 rates, shared batches"]["ratios"]
    assert "exptest_no_correction" in sweep
  if name == "gpu_suite":
    rounds = record["zooming_rounds"]
    assert [r["arms"] for r in rounds] == [1, 4]
    assert all(r["vmapped_seconds"] > 0 and r["sequential_seconds"] > 0 for r in rounds)
    assert record["vgg_epochs_per_second"] > 0


@pytest.mark.slow
def test_import_time_quick_run_compares_two_trees(tmp_path):
  from benchmarks import import_time
  result = import_time.main(["--quick", "--against", "HEAD", "--out", str(tmp_path)])
  record = json.loads((tmp_path / "import_time_quick.json").read_text())
  assert record["samples"] == 3 and record["against"] == "HEAD"
  assert set(record["medians"]) == {"this tree", "HEAD"} and result["ratio"] > 0
  # Each tree's own library was imported, and no extra's package with it.
  files = {name: {r["file"] for r in rs} for name, rs in result["records"].items()}
  assert files["this tree"] == {str(import_time.ROOT / "optax_exptest" / "__init__.py")}
  assert not files["HEAD"] & files["this tree"]
  assert all(r["extras"] == [] for rs in result["records"].values() for r in rs)
