"""Assembles `benchmarks/RESULTS.md` and the README's results table.

Every table comes from `benchmarks/results/<experiment>.md` and `.json`,
written by the experiment's own run from its measurements; this module only
puts them in order, marks the runs that predate a change of the library that
alters their rows (`STALE`), adds the wall times and the figures, and the
notes on where we differ from the paper. An experiment not in `ORDER` gets
its section after the listed ones, titled by its Markdown's first line.

The README's table, between `MARKERS`, is `readme_block` of `summary.json`;
`tests/test_docs.py` fails when the README holds another.

Run: `python -m benchmarks report` after the experiments.
"""

import importlib
import json
import pathlib
from typing import NamedTuple

from benchmarks.lib import common, paper

ORDER = [
    ("mnist_logreg", "Table 1: MNIST logistic regression"),
    ("alpha_beta", "Table 2: ExpTest over alpha and beta"),
    ("batch_size", "Mini-batch size (figure 2)"),
    ("california", "Table 3: California housing"),
    ("cifar10", "Table 4: CIFAR-10 with VGG-16"),
    ("demo_seeds", "The demo over seeds"),
    ("step_time", "ExpTest's cost per step"),
    ("zooming_search", "Zooming search against fair baselines"),
    ("vmapped_rounds", "Zooming: vmapped rounds"),
    ("inner_rules", "ExpTest with momentum and Adam inside"),
    ("curvature_bound", "The model-based bound against the best grid rate"),
    ("algoperf_mnist", "AlgoPerf MNIST: steps and seconds to 0.97"),
    ("char_gpt", "Character GPT on tiny Shakespeare"),
    ("gpu_suite", "The accelerator suite"),
]

FULL_RUN_EXPERIMENTS = ["mnist_logreg", "alpha_beta", "batch_size", "california"]

# Experiments whose Markdown merges several JSON files (and Tables 1 and 3's
# grids from `summary.json`): the report rebuilds it with their `summarize`.
REBUILT = ["inner_rules"]

DIFFERENCES = (pathlib.Path(__file__).resolve().parents[1] / "DIFFERENCES.md")


class Stale(NamedTuple):
  """A results file run before a change of the library that alters some rows.

  Attributes:
    run: the date of the run (older JSON files carry no date of their own).
    change: what changed since, and where the design describes it.
    rows: the optimizers (keys of `benchmarks.lib.optimizers.OPTIMIZERS`)
      whose figures the change alters.
    current: `(experiment, task)` of `summary.json` holding those rows as
      the library computes them now, or None where no run has them.
    cost: why it was not re-run.
  """

  run: str
  change: str
  rows: tuple[str, ...]
  current: tuple[str, str] | None
  cost: str


# Experiments whose results predate a change of the library that alters them:
# their rows are marked, not replaced, until they are re-run (their JSON then
# carries a later date; `stale`). Empty while every result is current.
STALE: dict[str, Stale] = {}


def stale(name: str, results: pathlib.Path = common.RESULTS) -> Stale | None:
  """`STALE[name]` while `name`'s results are still those of `STALE[name].run`."""
  entry = STALE.get(name)
  path = results / f"{name}.json"
  if entry is None or not path.exists():
    return None
  date = json.loads(path.read_text()).get("machine", {}).get("date")
  return entry if date is None or date <= entry.run else None


def _label(name: str) -> str:
  from benchmarks.lib import optimizers  # pylint: disable=g-import-not-at-top
  return optimizers.OPTIMIZERS[name].label


def _stale_note(name: str, stale: Stale) -> str:
  rows = ", ".join(_label(r) for r in stale.rows)
  note = (f"**Stale rows** (marked *stale*): this experiment ran on {stale.run},"
          f" before {stale.change}, and was not re-run ({stale.cost}): {rows}.")
  if stale.current:
    title = dict(ORDER).get(stale.current[0], stale.current[0])
    note += f" The library's current figures for some of them: section \"{title}\"."
  return note + f" Rebuild with `python -m benchmarks {name}`."


def _mark_stale_rows(markdown: str, stale: Stale) -> str:
  """Adds "(stale)" to the first cell of the table rows of `stale.rows`."""
  labels = {f"| {_label(r)} |": f"| {_label(r)} (stale) |" for r in stale.rows}
  lines = []
  for line in markdown.splitlines():
    for old, new in labels.items():
      if line.startswith(old):
        line = new + line[len(old):]
    lines.append(line)
  return "\n".join(lines)


def _body(markdown: str) -> str:
  """An experiment's Markdown without its title, headings one level down."""
  lines = markdown.strip().splitlines()
  if lines and lines[0].startswith("# "):
    lines = lines[1:]
  return "\n".join("#" + line if line.startswith("## ") else line for line in lines).strip()


def _sections(results: pathlib.Path):
  """`(name, title, markdown path, json path)` of each experiment that ran:
  those of `ORDER` first (a `_synthetic` or `_quick` run where only that
  ran), then any other `<name>.md` of `results`, titled by its first line."""
  seen = set()
  for name, title in ORDER:
    for variant in (name, f"{name}_synthetic", f"{name}_quick"):
      md = results / f"{variant}.md"
      if md.exists():
        seen.add(variant)
        if variant != name:
          title += f" ({variant.split('_')[-1]} run only)"
        yield name, title, md, results / f"{variant}.json"
        break
  for md in sorted(results.glob("*.md")):
    name = md.stem
    if name in seen or any(name.startswith(f"{n}_") for n, _ in ORDER):
      continue
    first = md.read_text().strip().splitlines()[:1]
    title = first[0][2:] if first and first[0].startswith("# ") else name
    yield name, title, md, results / f"{name}.json"


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
  for name, title, md, js in _sections(results):
    body = _body(md.read_text())
    parts.append(f"## {title}")
    entry = stale(name, results)
    if entry:
      parts += ["", _stale_note(name, entry)]
      body = _mark_stale_rows(body, entry)
    parts += ["", body, ""]
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


def _fmt(cell, digits):
  if not cell:
    return "-"
  if cell["n"] and abs(cell["mean"]) < 1e4:
    return f"{cell['mean']:.{digits}f} ± {cell['std']:.{digits}f}"
  return "diverged"


def _best(cells, sign):
  finite = [c for c in cells.values() if c["n"] and abs(c["mean"]) < 1e4]
  return min(finite, key=lambda c: sign * c["mean"]) if finite else None


def _california_cell(name, summary, notes, entry):
  """Table 3's cell at eta_max; a stale one marked, and replaced by the
  library's current figure where a run has it (‡) or kept (†)."""
  cali = summary.get("california", {})
  cell = _fmt(cali.get(name, {}).get("1.0"), 4)
  if not entry or name not in entry.rows:
    return cell
  current = None
  if entry.current:
    experiment, task = entry.current
    current = summary.get(experiment, {}).get(task, {}).get(name)
  if current:
    notes.setdefault("‡", (
        f"‡ from the `{entry.current[0]}` benchmark, the current library (final"
        f" iterate, {current['n']} seeds; `benchmarks/RESULTS.md`,"
        f" \"{dict(ORDER)[entry.current[0]]}\"): Table 3 ran on {entry.run},"
        f" before {entry.change}."))
    return _fmt(current, 4) + " ‡"
  notes.setdefault("†", f"† stale: Table 3 ran on {entry.run}, before"
                        f" {entry.change}, and was not re-run ({entry.cost}).")
  return cell + " †"


def readme_block(results: pathlib.Path = common.RESULTS) -> str:
  """The README's results: every optimizer on MNIST and California housing,
  from `summary.json`, Tables 1 and 3's JSON and `paper.py`."""
  from benchmarks.lib import optimizers  # pylint: disable=g-import-not-at-top
  summary = json.loads((results / "summary.json").read_text())
  mn, ca = (json.loads((results / f"{n}.json").read_text())
            for n in ("mnist_logreg", "california"))
  mnist, cali = summary.get("mnist_logreg", {}), summary.get("california", {})
  notes = {}
  rows = []
  for name, optimizer in optimizers.OPTIMIZERS.items():
    if name not in mnist and name not in cali:
      continue
    grid = optimizer.uses_grid
    m = mnist.get(name, {})
    rows.append([
        optimizer.label,
        f"searched over {len(m)} rates" if grid else "none",
        _fmt(m.get("1.0"), 2),
        _fmt(_best(m, -1), 2) if grid else "",
        _california_cell(name, summary, notes, stale("california", results)),
        _fmt(_best(cali.get(name, {}), 1), 4) if grid else "",
    ])
  table = common.markdown_table(
      ["optimizer", "rate chosen", "MNIST test acc. (%) at eta_max",
       "MNIST, best rate", "California test MSE at eta_max",
       "California, best rate"], rows)
  span = lambda f: f"{min(f):g}..{max(f):g}"
  paper_mnist, paper_cali = paper.MNIST["exptest"][1.0], paper.CALIFORNIA["exptest"][1.0]
  intro = (
      f"Mean ± std over {mn['seeds']} seeds, measured by `make bench` on two CPU"
      " cores; the full report, with the paper's numbers beside ours, time to"
      " accuracy and loss curves, is [benchmarks/RESULTS.md](benchmarks/RESULTS.md)."
      f" MNIST: logistic regression, batch 32, {mn['epochs']} epochs (the paper:"
      f" ExpTest {paper_mnist[0]:.2f} ± {paper_mnist[1]:.2f}). California housing:"
      f" 8-32-32-1 MLP, full batch, {ca['steps']} steps, final iterate (the paper:"
      f" ExpTest {paper_cali[0]:.4f} ± {paper_cali[1]:.4f}). Optimizers that need"
      f" a rate ran at f x eta_max for f in {span(mn['factors'])} (MNIST) and"
      f" {span(ca['factors'])} (California); 'best rate' is the best of those,"
      " which a user only finds with a sweep."
  )
  return "\n\n".join([intro, table, *notes.values()])


def readme_results(text: str) -> str:
  """What `text` (the README) holds between `MARKERS`."""
  begin, end = MARKERS
  if begin not in text or end not in text:
    raise ValueError(f"the README has no results markers {MARKERS}: put them"
                     " where the results table goes")
  return text.split(begin, 1)[1].split(end, 1)[0].strip()


def update_readme(results: pathlib.Path = common.RESULTS,
                  readme: pathlib.Path = README) -> None:
  """Puts `readme_block` between the README's result markers."""
  text = readme.read_text()
  readme_results(text)  # The markers are there.
  begin, end = MARKERS
  head, rest = text.split(begin, 1)
  _, tail = rest.split(end, 1)
  readme.write_text(f"{head}{begin}\n{readme_block(results)}\n{end}{tail}")


def main(argv=None):
  parser = common.parser(__doc__, seeds=None)
  args = parser.parse_args(argv)
  for name in REBUILT:
    importlib.import_module(f"benchmarks.{name}").summarize(args.out)
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
