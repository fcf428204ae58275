"""Shared plumbing of the benchmarks: timing, result files, Markdown tables."""

import json
import pathlib
import platform
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
  """What the numbers were measured on."""
  return dict(
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
