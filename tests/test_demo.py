"""Smoke run of the main job (`make demo`) on a subset of MNIST."""
import json

import pytest

from examples import mnist_demo


@pytest.mark.slow
def test_demo_on_a_subset(tmp_path, capsys):
  run = mnist_demo.main([
      "--subset", "10000", "--epochs", "2", "--quiet", "--out", str(tmp_path),
  ])
  out = capsys.readouterr().out
  assert "eta_max = " in out
  assert "test accuracy: " in out
  record = json.loads((tmp_path / "mnist_exptest_seed0.json").read_text())
  assert (tmp_path / "mnist_exptest_seed0.png").stat().st_size > 10_000
  assert record["test_accuracy"] == run["test_accuracy"] > 0.8
  assert len(record["train_loss"]) == 2 * (10000 // 32)
  # Every decision is printed with its step, phase, p-value and new rate; its
  # step is the update's number (from 1, as exptest_summary counts), where the
  # per-step rate that the plot draws takes the new rate.
  assert len(record["learning_rate"]) == len(record["train_loss"])
  rates = [record["eta_max"]] + record["learning_rate"]
  for d in record["decisions"]:
    assert f"step {d['step']:6d}  {d['phase']}" in out
    assert (rates[d["step"] - 1], rates[d["step"]]) == pytest.approx(
        (d["old_rate"], d["new_rate"]), rel=1e-6)
  assert record["decisions"][0]["decision"] in ("exponential", "restart")
