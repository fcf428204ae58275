"""Assembles `benchmarks/RESULTS.md` from the experiments' result files.

Every table comes from `benchmarks/results/<experiment>.md`, written by the
experiment's own run; this module only puts them in order, adds the wall
times and the figures, and the notes on where we differ from the paper.

Run: `python -m benchmarks report` after the experiments.
"""

import json
import pathlib

from benchmarks import common

ORDER = [
    ("mnist_logreg", "Table 1: MNIST logistic regression"),
    ("alpha_beta", "Table 2: ExpTest over alpha and beta"),
    ("batch_size", "Mini-batch size (figure 2)"),
    ("california", "Table 3: California housing"),
    ("cifar10", "Table 4: CIFAR-10 with VGG-16"),
    ("demo_seeds", "The demo over seeds"),
    ("step_time", "ExpTest's cost per step"),
    ("zooming_search", "Zooming search against TPE, random and grid"),
    ("zooming_speed", "Zooming: vmapped rounds"),
]

FULL_RUN_EXPERIMENTS = ["mnist_logreg", "alpha_beta", "batch_size", "california"]

DIFFERENCES = (pathlib.Path(__file__).resolve().parent / "DIFFERENCES.md")


def _body(markdown: str) -> str:
  """An experiment's Markdown without its title, headings one level down."""
  lines = markdown.strip().splitlines()
  if lines and lines[0].startswith("# "):
    lines = lines[1:]
  return "\n".join("#" + l if l.startswith("## ") else l for l in lines).strip()


def build(results: pathlib.Path = common.RESULTS) -> str:
  parts = [
      "# Results",
      "",
      "Measured by `python -m benchmarks <experiment>` on this repository's CI"
      " machine kind (2 CPU cores, no GPU) unless a section says otherwise;"
      " every number in a column of ours comes from those runs, the paper's"
      " (arXiv 2411.16975) are in rows marked 'paper:'. Rebuild this file with"
      " `python -m benchmarks report`.",
      "",
  ]
  times = []
  for name, title in ORDER:
    md, js = results / f"{name}.md", results / f"{name}.json"
    if not md.exists():
      for variant in (f"{name}_synthetic", f"{name}_quick"):
        if (results / f"{variant}.md").exists():
          md, js = results / f"{variant}.md", results / f"{variant}.json"
          title += f" ({variant.split('_')[-1]} run only)"
          break
      else:
        continue
    parts += [f"## {title}", "", _body(md.read_text()), ""]
    png = md.with_suffix(".png")
    if png.exists():
      parts += [f"![{title}](results/{png.name})", ""]
    record = json.loads(js.read_text()) if js.exists() else {}
    if "wall_seconds" in record:
      times.append((name, record["wall_seconds"]))
  if times:
    total = sum(s for n, s in times if n in FULL_RUN_EXPERIMENTS)
    parts += [
        "## Wall time of each experiment",
        "",
        common.markdown_table(
            ["experiment", "wall time (s)"],
            [[n, f"{s:.0f}"] for n, s in times]
            + [["total of Tables 1-3 and the batch-size study", f"{total:.0f}"]],
        ),
        "",
    ]
  if DIFFERENCES.exists():
    parts += [DIFFERENCES.read_text().strip(), ""]
  return "\n".join(parts)


def main(argv=None):
  parser = common.parser(__doc__, seeds=None)
  args = parser.parse_args(argv)
  text = build(args.out)
  path = args.out.parent / "RESULTS.md" if args.out == common.RESULTS else args.out / "RESULTS.md"
  path.write_text(text)
  print(f"wrote {path}")
  return path


if __name__ == "__main__":
  main()
