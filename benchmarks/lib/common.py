"""Shared plumbing of the benchmarks: timing, result files, Markdown tables."""

import argparse
import datetime
import json
import pathlib
import platform
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

# benchmarks/results/, beside the experiments.
RESULTS = pathlib.Path(__file__).resolve().parents[1] / "results"


def machine() -> dict[str, Any]:
  """What the numbers were measured on, and when (the UTC date: the report
  tells a run that predates a change of the library by it)."""
  return dict(
      date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
      platform=platform.platform(),
      python=platform.python_version(),
      jax=jax.__version__,
      backend=jax.default_backend(),
      devices=[str(d) for d in jax.devices()],
  )


def interleaved_timings(
    fns: Mapping[str, Callable[[], Any]], repeats: int
) -> dict[str, list[float]]:
  """Times each function `repeats` times, alternating between them.

  Alternating spreads the noise of a shared machine over all candidates
  alike; each function is called once first to compile it.
  """
  for fn in fns.values():
    jax.block_until_ready(fn())
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn())
      times[name].append(time.perf_counter() - start)
  return times


def paired_ratio(times: Mapping[str, Sequence[float]], num: str, den: str) -> dict:
  """Median ratio of paired timings, with the range over repeats."""
  ratios = np.asarray(times[num]) / np.asarray(times[den])
  return dict(
      median=float(np.median(ratios)),
      min=float(np.min(ratios)),
      max=float(np.max(ratios)),
      of_medians=float(np.median(times[num]) / np.median(times[den])),
  )


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """A GitHub Markdown table."""
  fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
  lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
  lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
  return "\n".join(lines)


def write_results(name: str, data: Mapping[str, Any], markdown: str,
                  out: pathlib.Path = RESULTS) -> pathlib.Path:
  """Writes `<name>.json` and `<name>.md` under `out`; returns the JSON path."""
  out.mkdir(parents=True, exist_ok=True)
  path = out / f"{name}.json"
  path.write_text(json.dumps(dict(data, machine=machine()), indent=1))
  (out / f"{name}.md").write_text(markdown.rstrip() + "\n")
  return path


def update_summary(section: str, data: Any, out: pathlib.Path = RESULTS) -> None:
  """Writes `data` as `section` of `summary.json`, keeping other sections."""
  path = out / "summary.json"
  summary = json.loads(path.read_text()) if path.exists() else {}
  summary[section] = data
  out.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(summary, indent=1, sort_keys=True))


def mean_std(values: Sequence[float]) -> dict:
  """`{"mean", "std", "n"}` of finite values (std with ddof 0, as numpy)."""
  v = np.asarray(values, float)
  finite = v[np.isfinite(v)]
  return dict(
      mean=float(finite.mean()) if finite.size else float("nan"),
      std=float(finite.std()) if finite.size else float("nan"),
      n=int(finite.size),
      n_diverged=int(v.size - finite.size),
  )


def fmt_mean_std(cell: Mapping[str, Any] | None, digits: int = 2) -> str:
  """`mean ± std` (and the number of diverged runs, if any)."""
  if not cell:
    return "-"
  if not cell["n"]:
    return f"diverged ({cell.get('n_diverged', 0)})"
  big = abs(cell["mean"]) >= 1e4
  num = (lambda v: f"{v:.2e}") if big else (lambda v: f"{v:.{digits}f}")
  text = f"{num(cell['mean'])} ± {num(cell['std'])}"
  if cell.get("n_diverged"):
    text += f" ({cell['n_diverged']} diverged)"
  return text


def moving_average(x: np.ndarray, window: int) -> np.ndarray:
  """Trailing moving average along the last axis ('valid' part only)."""
  window = max(1, min(window, x.shape[-1]))
  c = np.cumsum(np.pad(x, [(0, 0)] * (x.ndim - 1) + [(1, 0)]), axis=-1)
  return (c[..., window:] - c[..., :-window]) / window


def progress(iterable, **kwargs):
  """tqdm when installed, the iterable itself otherwise."""
  try:
    from tqdm import tqdm
  except ImportError:
    return iterable
  return tqdm(iterable, **kwargs)


def parser(doc: str, *, seeds: int | None = 5,
           out_help: str = "folder for the JSON, Markdown and PNG results",
           ) -> "argparse.ArgumentParser":
  """An experiment's command line: `--quick`, `--out` and (usually) `--seeds`."""
  p = argparse.ArgumentParser(description=doc.splitlines()[0])
  p.add_argument("--quick", action="store_true",
                 help="a seconds-long smoke run (results named *_quick)")
  p.add_argument("--out", type=pathlib.Path, default=RESULTS, help=out_help)
  if seeds is not None:
    p.add_argument("--seeds", type=int, default=seeds, help="seeds per configuration")
  return p


def add_exptest_kwargs(p: "argparse.ArgumentParser") -> None:
  """`--exptest-kwargs JSON`: keyword arguments of `optax_exptest.exptest`
  for every ExpTest row (`optimizers.build_exptest`), so that a changed
  algorithm's option reruns an experiment with one command line."""
  p.add_argument("--exptest-kwargs", type=json.loads, default={},
                 help='JSON keyword arguments of optax_exptest.exptest, e.g.'
                 ' \'{"alpha": 0.05}\'')


def result_name(experiment: str, quick: bool) -> str:
  """Quick runs write beside, never over, the full results."""
  return f"{experiment}_quick" if quick else experiment


def expand_rate_free(table: Mapping[str, Mapping[str, Any]],
                     factors: Sequence[float]) -> dict:
  """Each rate-free optimizer's cell under every factor, as the paper's
  tables show them, so that every optimizer has the same keys."""
  return {
      name: ({str(f): cells["none"] for f in factors} if set(cells) == {"none"}
             else dict(cells))
      for name, cells in table.items()
  }
