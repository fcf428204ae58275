"""Smoke runs of the ExpTest experiments (`--quick`), so that they cannot rot."""
import ast
import json
import pathlib

import numpy as np
import pytest

from benchmarks import __main__ as runner
from helpers import run_quick

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"

EXPERIMENTS = [
    "mnist_logreg", "alpha_beta", "batch_size", "california", "cifar10",
    "demo_seeds", "curvature_bound",
]
# Their quick runs have tests of their own below (each once).
NETWORK_EXPERIMENTS = ["algoperf_mnist", "char_gpt", "scoreboard"]
# In tests/test_speed_benchmarks.py, so that pytest-xdist's `loadfile` runs
# them beside these.
SPEED_EXPERIMENTS = ["step_time", "gpu_suite"]


def test_runner_lists_the_experiments():
  assert set(EXPERIMENTS + SPEED_EXPERIMENTS + NETWORK_EXPERIMENTS) <= set(
      runner.experiments())
  for library in ("lib", "common", "problems", "trainers", "plots", "report"):
    assert library not in runner.experiments()
  assert runner.COMMANDS == {"report": "benchmarks.lib.report"}


def test_runner_rejects_an_unknown_experiment():
  with pytest.raises(SystemExit, match="unknown experiment 'nope'.*mnist_logreg"):
    runner.main(["nope"])


def _imported_modules(path: pathlib.Path) -> set[str]:
  """The modules a file imports (absolute imports; `from a import b` gives
  `a` and `a.b`)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      found.add(node.module)
      found.update(f"{node.module}.{alias.name}" for alias in node.names)
  return found


@pytest.mark.parametrize(
    "path", sorted(BENCHMARKS.rglob("*.py")),
    ids=lambda p: str(p.relative_to(BENCHMARKS)))
def test_benchmarks_do_not_import_the_examples(path):
  imported = _imported_modules(path)
  assert not {m for m in imported if m.split(".")[0] == "examples"}, imported
  if path.parent.name == "lib":  # The library never imports an experiment.
    experiments = {f"benchmarks.{name}" for name in runner.experiments()}
    assert not imported & experiments, imported & experiments


def test_mnist_problem_is_the_demos():
  from benchmarks.lib import problems
  from examples import mnist_demo
  ours = problems.load_mnist(subset=600)
  theirs = mnist_demo.load_data(subset=600)
  for a, b in zip(ours, theirs, strict=True):
    np.testing.assert_array_equal(a, b)
  assert ours[0].shape == (600, 784) and ours[2].shape == (100, 784)
  import jax
  key = jax.random.PRNGKey(3)
  params = problems.init_linear(key)
  np.testing.assert_array_equal(params["w"], mnist_demo.init_linear(key)["w"])
  assert float(problems.cross_entropy(params, ours[0], ours[1])) == pytest.approx(
      float(mnist_demo.loss_fn(params, ours[0], ours[1])), rel=1e-6)


def test_teacher_student_problem():
  import jax
  from benchmarks.lib import problems
  x, y = problems.teacher_student_data("sigmoid", 64)
  assert x.shape == (64, 20) and y.shape == (64,)
  student = problems.init_student(jax.random.PRNGKey(0))
  assert float(problems.student_mse(student, x, y, "sigmoid")) > 0
  with pytest.raises(ValueError, match="activation must be one of"):
    problems.teacher_student_data("tanh", 64)


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_quick_run_writes_results(name, tmp_path):
  result, record = run_quick(name, tmp_path)
  if name == "mnist_logreg":
    # Every optimizer has a cell for every factor it runs at.
    assert list(result) == ["exptest", "sgd"]  # the given order, not the run order
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


# About 25 s of CPU (100-160 s wall at load 20), most of it compiling ExpTest
# and the model bound.
@pytest.mark.slow
def test_algoperf_mnist_quick_run(tmp_path):
  from benchmarks import algoperf_mnist
  _, record = run_quick("algoperf_mnist", tmp_path)
  assert set(record["runs"]) == {"exptest_sgd_lr_upper_bound", "schedule_free_adamw"}
  assert 0 < record["eta_x"] < record["eta_model"] < 10
  exptest = record["runs"]["exptest_sgd_lr_upper_bound"]
  assert exptest["start_rate"] == record["eta_x"]
  for run in record["runs"].values():
    # 2048 images, one epoch: above chance, and no run reaches the target.
    assert all(0.3 < a <= 1 for a in run["final_accuracy"])
    assert all(np.isnan(s) or s > 0 for s in run["steps_to_target"])
  largest, final = exptest["largest_rate"][0], exptest["final_rate"][0]
  assert final <= largest and largest >= record["eta_x"] * (1 - 1e-6)
  assert (tmp_path / "algoperf_mnist_quick.png").stat().st_size > 10_000
  table = algoperf_mnist.markdown(record)
  assert "| ExpTest, inner sgd, from lr_upper_bound | 64 |" in table


# About 25 s of CPU (100-160 s wall at load 20), most of it compiling ExpTest
# and the model bound.
@pytest.mark.slow
def test_char_gpt_quick_run(tmp_path):
  import math
  _, record = run_quick("char_gpt", tmp_path)
  run = record["runs"]["exptest_adamw"]
  # Ten steps from the uniform prediction's ln(65) nats per character.
  assert all(2.0 < v < math.log(65) + 0.5 for v in run["final_val_loss"])
  assert 0 < run["final_rate"][0] <= run["largest_rate"][0]
  assert record["eta_model"] > 0 and record["steps"] == 10


def test_char_gpt_data_split_and_vocabulary():
  from benchmarks import char_gpt
  train, val, vocab = char_gpt.load()
  assert vocab == 65 and len(train) == int(0.9 * 1_115_394)
  assert len(train) + len(val) == 1_115_394
  assert train.min() == 0 and max(train.max(), val.max()) == vocab - 1


def test_report_assembles_the_committed_results(tmp_path):
  from benchmarks.lib import common, report
  text = report.build(common.RESULTS)
  for title in ("Table 1", "Table 2", "Table 3", "Mini-batch size", "Wall time"):
    assert title in text
  assert "paper:" in text and "## Where and why we differ" in text
  # The scoreboard's baseline, an experiment outside `report.ORDER`.
  assert "## Scoreboard `scoreboard_paper`" in text
  assert "(results/scoreboard_paper.png)" in text
  readme = tmp_path / "README.md"
  readme.write_text("intro\n" + "\n".join(report.MARKERS) + "\nrest\n")
  report.update_readme(common.RESULTS, readme)
  updated = readme.read_text()
  assert "| ExpTest | none |" in updated and updated.endswith("rest\n")


@pytest.mark.slow
def test_inner_rules_cnn_quick_run(tmp_path):
  from benchmarks import inner_rules
  inner_rules.main(["--task", "cnn", "--quick", "--cnn-seeds", "1",
                    "--out", str(tmp_path)])
  record = json.loads((tmp_path / "inner_rules_cnn_quick.json").read_text())["cnn"]
  runs = {r["name"]: r for r in record["runs"]}
  assert set(runs) == {"exptest_adam", "adam"}
  for r in runs.values():
    assert len(r["accuracy"]) == 1 and 10 < r["accuracy"][0] <= 100
  # ExpTest's final state is read back: the rate Adam's rule put it at.
  rate = runs["exptest_adam"]["final_rate_over_eta_max"][0]
  assert 0 < rate < 1 and runs["exptest_adam"]["cuts"][0] >= 0
  table = inner_rules._cnn_markdown(record)
  assert sum(line.startswith("| ") for line in table) == 1 + len(runs)  # header
  assert "0.03 x eta_max *" in "\n".join(table)  # the grid's best is marked


@pytest.mark.slow
def test_inner_rules_names_run_some_rows_and_keep_the_others(tmp_path):
  from benchmarks import inner_rules
  run = lambda names, epochs="1": inner_rules.main(
      ["--task", "mnist", "--quick", "--subset", "600", "--seeds", "1",
       "--epochs", epochs, "--out", str(tmp_path), "--names", *names])
  read = lambda: json.loads(
      (tmp_path / "inner_rules_mnist_quick.json").read_text())["mnist"]
  run(["exptest_momentum"])
  first = read()["exptest_momentum"]
  run(["exptest_rms"])
  record = read()
  assert record["exptest_momentum"] == first  # kept from the first run
  assert 0 < record["exptest_rms"]["accuracy"][0] <= 100
  # Other settings: the rows of the earlier runs are not mixed in.
  run(["exptest_nesterov"], epochs="2")
  assert set(k for k, v in read().items() if isinstance(v, dict)) == {
      "exptest_nesterov"}


# About 150 s of CPU (6-11 minutes wall at load 10-13), most of it compiling ExpTest
# once per task (about 9 s of CPU a program).
@pytest.mark.slow
def test_scoreboard_quick_run(tmp_path):
  from benchmarks import scoreboard
  _, record = run_quick("scoreboard", tmp_path)
  rows = record["rows"]
  # Every task, one inner each (bad batches: one row per fraction), one seed.
  assert list(record["tasks"]) == list(scoreboard.TASKS)
  assert {r["inner"] for r in rows} == set(scoreboard.INNER_LABELS.values()) | {
      "Adam + weight decay 0.1"}
  assert len(rows) == len(scoreboard.TASKS) + 1
  for row in rows:
    assert row["size"] == "quick" and len(row["values"]) == 1
    higher_is_better = "accuracy" in row["metric"]
    value, threshold = row["value"], row["threshold"]
    if row["metric"].startswith("steps"):  # and every final at 0.97
      assert row["passed"] == (value <= threshold and min(row["final"]) >= 0.97)
    elif higher_is_better:
      assert row["passed"] == (value >= threshold)
    else:
      assert row["passed"] == (value <= threshold)
  # A smoke run trains a few dozen steps: no task reaches its target.
  assert not any(r["passed"] for r in rows)
  assert record["horizon"]["used"] == scoreboard.accepts_horizon()
  for task in record["tasks"].values():
    assert task["wall_seconds"] > 0 and task["cpu_seconds"] > 0
  text = (tmp_path / "scoreboard_quick.md").read_text()
  assert f"**0 of {len(rows)} targets met.**" in text
  assert sum(line.startswith("| ") for line in text.splitlines()) == (
      1 + len(rows) + 1 + len(record["tasks"]))  # the two tables and headers
  assert (tmp_path / "scoreboard_quick.png").stat().st_size > 10_000


def test_scoreboard_passes_the_horizon_only_where_exptest_takes_one(monkeypatch):
  import inspect
  import optax_exptest
  from benchmarks import scoreboard
  from benchmarks.lib import optimizers
  built = []
  monkeypatch.setattr(optimizers, "build_exptest",
                      lambda rate, inner, **kw: built.append((rate, inner, kw)))
  scoreboard.ExpTest({"alpha": 0.1}, horizon=True)(0.5, "adam", 700, sgd_correction=False)
  scoreboard.ExpTest({"alpha": 0.1}, horizon=False)(0.5, "adam", 700)
  assert built == [(0.5, "adam", dict(alpha=0.1, horizon=700, sgd_correction=False)),
                   (0.5, "adam", dict(alpha=0.1))]
  # The task's own settings win over the command line's.
  assert scoreboard.ExpTest({"sgd_correction": True}, False).options(
      10, sgd_correction=False) == {"sgd_correction": False}
  takes = "horizon" in inspect.signature(optax_exptest.exptest).parameters
  assert scoreboard.accepts_horizon() == takes

  def with_horizon(learning_rate, *, horizon=None):
    del learning_rate, horizon
  monkeypatch.setattr(optax_exptest, "exptest", with_horizon)
  assert scoreboard.accepts_horizon()
  with pytest.raises(SystemExit, match="leave out 'horizon'"):
    scoreboard.main(["--exptest-kwargs", '{"horizon": 5}'])


def test_scoreboard_rows_results_and_names(tmp_path):
  import pathlib
  from benchmarks import scoreboard
  from benchmarks.lib import common
  nan = float("nan")
  # A run that never reaches the target counts as the slowest in the median.
  row = scoreboard._row("t", "none", "steps to 0.97", [1200, nan, 3000], "median",
                        "", True)
  assert row["value"] == 3000
  assert scoreboard._row("t", "", "", [nan, nan, 5], "median", "", True)["value"] == float("inf")
  assert scoreboard._row("t", "", "", [1.0, 2.0], "mean", "", True)["value"] == 1.5
  assert not scoreboard._at_least([99.5, nan], 99.0)
  assert scoreboard._at_least([99.5, 98.6], 99.0)  # the mean, 99.05
  assert not scoreboard._at_least([99.5, 98.6], 99.1)
  # `--out NAME` names results under benchmarks/results/; a path is a folder.
  assert scoreboard.destination(pathlib.Path("scoreboard_x"), False) == (
      common.RESULTS, "scoreboard_x")
  assert scoreboard.destination(tmp_path, True) == (tmp_path, "scoreboard_quick")
  # Saved scoreboards side by side, rows matched by task and inner.
  a = dict(rows=[dict(task="A", inner="none", metric="test accuracy (%)", value=99.1,
                      passed=True)])
  b = dict(rows=[dict(task="A", inner="none", metric="test accuracy (%)", value=98.2,
                      passed=False),
                 dict(task="B", inner="Adam", metric="final test MSE", value=0.27,
                      passed=True)])
  for name, record in (("a", a), ("b", b)):
    (tmp_path / f"{name}.json").write_text(json.dumps(record))
  text = scoreboard.compare([str(tmp_path / "a"), str(tmp_path / "b")])
  lines = text.splitlines()
  assert lines[2].endswith("| 99.10 pass | 98.20 FAIL |")
  assert lines[3].endswith("| - | 0.2700 pass |")
  assert lines[4] == "| targets met |  | 1 / 1 | 1 / 2 |"
