"""`import optax_exptest` in a fresh process: this tree against a git ref.

Each sample is a fresh interpreter that times `import optax_exptest` in
itself (`time.perf_counter` around the import, the interpreter's own start
left out) and lists the extras' packages the import loaded. The two trees
alternate, sample after sample, so that a busy machine slows both alike; the
report gives each one's median and their ratio. The ref's library comes from
`git archive` into a temporary folder; both run on this environment's
packages.

Run: `python -m benchmarks import_time [--against main] [--samples 21] [--quick]`.
"""

import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.lib import common

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The optional packages of the extras: a light import loads none of them.
EXTRAS = ("flax", "matplotlib", "optuna", "ray", "tensorflow_datasets")
SAMPLE = f"""
import sys, time, json
start = time.perf_counter()
import optax_exptest
seconds = time.perf_counter() - start
print(json.dumps(dict(seconds=seconds, file=optax_exptest.__file__,
                      extras=[m for m in {EXTRAS!r} if m in sys.modules])))
"""


def sample(tree: pathlib.Path, cwd: str) -> dict:
  """One fresh interpreter's import of the library found in `tree`."""
  env = dict(os.environ, PYTHONPATH=str(tree))
  out = subprocess.run([sys.executable, "-c", SAMPLE], cwd=cwd, env=env, check=True,
                       capture_output=True, text=True).stdout
  record = json.loads(out.splitlines()[-1])
  if not pathlib.Path(record["file"]).resolve().is_relative_to(tree.resolve()):
    raise RuntimeError(f"imported {record['file']}, not the tree {tree}")
  return record


def export(ref: str, folder: pathlib.Path) -> pathlib.Path:
  """The library at `ref` (`git archive`), extracted under `folder`."""
  archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "optax_exptest"],
                           check=True, capture_output=True).stdout
  subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
  return folder


def main(argv=None):
  parser = common.parser(__doc__, seeds=None)
  parser.add_argument("--against", default="main", help="the git ref to compare with")
  parser.add_argument("--samples", type=int, default=21, help="fresh imports per tree")
  args = parser.parse_args(argv)
  start = time.perf_counter()
  samples = 3 if args.quick else args.samples
  with tempfile.TemporaryDirectory() as tmp:
    ref, cwd = pathlib.Path(tmp, "ref"), pathlib.Path(tmp, "cwd")  # cwd: nothing to import
    ref.mkdir()
    cwd.mkdir()
    trees = {"this tree": ROOT, args.against: export(args.against, ref)}
    records = {name: [] for name in trees}
    for _ in common.progress(range(samples), desc="import samples"):
      for name, tree in trees.items():
        records[name].append(sample(tree, str(cwd)))
  seconds = {name: [r["seconds"] for r in rs] for name, rs in records.items()}
  medians = {name: statistics.median(s) for name, s in seconds.items()}
  ratio = medians["this tree"] / medians[args.against]
  rows = [[name, f"{medians[name]:.3f}", f"{min(s):.3f} .. {max(s):.3f}",
           ", ".join(records[name][-1]["extras"]) or "none"]
          for name, s in seconds.items()]
  markdown = "\n".join([
      "# `import optax_exptest` in a fresh process",
      "",
      f"{samples} fresh interpreters per tree, alternating; seconds of the import itself.",
      "",
      common.markdown_table(["tree", "median (s)", "range (s)", "extras' packages loaded"],
                            rows),
      "",
      f"Ratio of the medians, this tree / {args.against}: {ratio:.3f}.",
  ])
  print(markdown)
  name = common.result_name("import_time", args.quick)
  common.write_results(name, dict(against=args.against, samples=samples, seconds=seconds,
                                  medians=medians, ratio=ratio,
                                  wall_seconds=time.perf_counter() - start),
                       markdown, args.out)
  return dict(medians=medians, ratio=ratio, records=records)


if __name__ == "__main__":
  main()
