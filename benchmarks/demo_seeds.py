"""Fidelity of the main job: `make demo`'s test accuracy over seeds.

Runs the demo (`examples/mnist_demo.py`: the paper's MNIST recipe with
ExpTest) once per seed, as `make demo` runs it (a program of its own, not
imported), and compares its mean ± std with the paper's 92.30 ± 0.07 %
(n = 5).

Run: `python -m benchmarks demo_seeds [--quick] [--seeds N]`.
"""

import json
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks.lib import common, paper

DEMO = pathlib.Path(__file__).resolve().parents[1] / "examples" / "mnist_demo.py"


def run_demo(seed: int, extra: list[str]) -> dict:
  """Runs the demo for one seed; returns the record it writes (JSON)."""
  with tempfile.TemporaryDirectory() as out:
    subprocess.run(
        [sys.executable, str(DEMO), "--seed", str(seed), "--quiet", "--out", out,
         *extra],
        check=True, stdout=subprocess.DEVNULL,
    )
    return json.loads(
        (pathlib.Path(out) / f"mnist_exptest_seed{seed}.json").read_text())


def main(argv=None):
  parser = common.parser(__doc__)
  args = parser.parse_args(argv)
  start = time.perf_counter()
  seeds = range(2 if args.quick else args.seeds)
  extra = ["--subset", "6000", "--epochs", "1"] if args.quick else []
  runs = [run_demo(seed, extra)
          for seed in common.progress(seeds, desc="demo seeds", unit="seed")]
  acc = np.array([100 * r["test_accuracy"] for r in runs])
  ours = common.mean_std(acc)
  theirs = paper.MNIST["exptest"][1.0]
  seconds = time.perf_counter() - start
  markdown = "\n".join([
      "# The demo over seeds",
      "",
      common.markdown_table(
          ["run", "test accuracy (%)", "per seed", "cuts", "resets"],
          [["`make demo` recipe, ours", common.fmt_mean_std(ours),
            " ".join(f"{a:.2f}" for a in acc),
            " ".join(str(r["num_cuts"]) for r in runs),
            " ".join(str(r["num_resets"]) for r in runs)],
           ["paper (authors' code)", f"{theirs[0]:.2f} ± {theirs[1]:.2f}",
            "92.39 92.20 92.37 92.24 92.30", "", ""]],
      ),
      "",
      f"Wall time: {seconds:.0f} s for {len(runs)} runs, one after another.",
  ])
  print(markdown)
  name = common.result_name("demo_seeds", args.quick)
  common.write_results(name, dict(test_accuracy=ours, per_seed=acc.tolist(),
                                  wall_seconds=seconds), markdown,
                       args.out)
  return ours


if __name__ == "__main__":
  main()
