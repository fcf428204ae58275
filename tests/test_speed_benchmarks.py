"""Smoke runs of the speed benchmarks (`step_time`, `gpu_suite`, `--quick`).

Beside tests/test_benchmarks.py, so that pytest-xdist's `loadfile` runs the
two files on different workers.
"""
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
