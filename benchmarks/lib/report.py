"""Assembles `benchmarks/RESULTS.md` from the experiments' result files.

Every table comes from `benchmarks/results/<experiment>.md`, written by the
experiment's own run; this module only puts them in order, adds the wall
times and the figures, and the notes on where we differ from the paper.

Run: `python -m benchmarks report` after the experiments.
"""

import json
import pathlib

from benchmarks.lib import common

ORDER = [
    ("mnist_logreg", "Table 1: MNIST logistic regression"),
    ("alpha_beta", "Table 2: ExpTest over alpha and beta"),
    ("batch_size", "Mini-batch size (figure 2)"),
    ("california", "Table 3: California housing"),
    ("cifar10", "Table 4: CIFAR-10 with VGG-16"),
    ("demo_seeds", "The demo over seeds"),
    ("step_time", "ExpTest's cost per step"),
    ("zooming_search", "Zooming search against fair baselines"),
    ("zooming_speed", "Zooming: vmapped rounds"),
    ("inner_rules", "ExpTest with momentum and Adam inside"),
    ("curvature_bound", "The model-based bound against the best grid rate"),
    ("algoperf_mnist", "AlgoPerf MNIST: steps and seconds to 0.97"),
    ("char_gpt", "Character GPT on tiny Shakespeare"),
    ("gpu_suite", "The accelerator suite"),
]

FULL_RUN_EXPERIMENTS = ["mnist_logreg", "alpha_beta", "batch_size", "california"]

DIFFERENCES = (pathlib.Path(__file__).resolve().parents[1] / "DIFFERENCES.md")


def _body(markdown: str) -> str:
  """An experiment's Markdown without its title, headings one level down."""
  lines = markdown.strip().splitlines()
  if lines and lines[0].startswith("# "):
    lines = lines[1:]
  return "\n".join("#" + line if line.startswith("## ") else line for line in lines).strip()


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


README = pathlib.Path(__file__).resolve().parents[2] / "README.md"
MARKERS = ("<!-- results: begin (python -m benchmarks report) -->",
           "<!-- results: end -->")


def readme_table(summary: dict) -> str:
  """The headline table: every optimizer on MNIST and California housing."""
  from benchmarks.lib import optimizers  # pylint: disable=g-import-not-at-top
  mnist, cali = summary.get("mnist_logreg", {}), summary.get("california", {})
  fmt = lambda c, d: (f"{c['mean']:.{d}f} ± {c['std']:.{d}f}" if c and c["n"]
                      and abs(c["mean"]) < 1e4 else ("diverged" if c else "-"))

  def best(cells, key):
    finite = [c for c in cells.values() if c["n"] and abs(c["mean"]) < 1e4]
    return min(finite, key=key) if finite else None

  rows = []
  for name in optimizers.OPTIMIZERS:
    if name not in mnist and name not in cali:
      continue
    m, c = mnist.get(name, {}), cali.get(name, {})
    grid = optimizers.OPTIMIZERS[name].uses_grid
    rows.append([
        optimizers.OPTIMIZERS[name].label,
        "searched over 5 rates" if grid else "none",
        fmt(m.get("1.0"), 2),
        fmt(best(m, lambda x: -x["mean"]), 2) if grid else "",
        fmt(c.get("1.0"), 4),
        fmt(best(c, lambda x: x["mean"]), 4) if grid else "",
    ])
  return common.markdown_table(
      ["optimizer", "rate chosen", "MNIST test acc. (%) at eta_max",
       "MNIST, best rate", "California test MSE at eta_max",
       "California, best rate"], rows)


def update_readme(results: pathlib.Path = common.RESULTS, readme: pathlib.Path = README):
  """Puts the headline table between the README's result markers."""
  summary_path = results / "summary.json"
  if not summary_path.exists() or not readme.exists():
    return
  text = readme.read_text()
  begin, end = MARKERS
  if begin not in text or end not in text:
    return
  table = readme_table(json.loads(summary_path.read_text()))
  head, rest = text.split(begin, 1)
  _, tail = rest.split(end, 1)
  intro = (
      "Mean ± std over 5 seeds, measured by `make bench` on two CPU cores (the"
      " full report, with the paper's numbers beside ours, time to accuracy and"
      " loss curves: [benchmarks/RESULTS.md](benchmarks/RESULTS.md)). MNIST:"
      " logistic regression, batch 32, 5 epochs (the paper: ExpTest 92.30 ±"
      " 0.07). California housing: 8-32-32-1 MLP, full batch, 10000 steps,"
      " final iterate (the paper: ExpTest 0.2846 ± 0.0070). Optimizers that"
      " need a rate ran at f x eta_max for f in 1e-3..10 (MNIST) and 1e-4..1"
      " (California); 'best rate' is the best of those, which a user only"
      " finds with a sweep."
  )
  readme.write_text(f"{head}{begin}\n{intro}\n\n{table}\n{end}{tail}")


def main(argv=None):
  parser = common.parser(__doc__, seeds=None)
  args = parser.parse_args(argv)
  text = build(args.out)
  path = args.out.parent / "RESULTS.md" if args.out == common.RESULTS else args.out / "RESULTS.md"
  path.write_text(text)
  print(f"wrote {path}")
  if args.out == common.RESULTS:
    update_readme()
    print(f"updated the results table of {README}")
  return path


if __name__ == "__main__":
  main()
