"""Runs one experiment: `python -m benchmarks <experiment> [options]`.

`python -m benchmarks list` names the experiments; each module's `--help`
gives its options (all take `--quick` for a seconds-long smoke run).
"""

import importlib
import pkgutil
import sys

import benchmarks

# Modules of shared code, not experiments.
_LIBRARY = {"common", "optimizers", "paper", "plots", "mnist_training"}


def experiments() -> list[str]:
  return sorted(
      m.name for m in pkgutil.iter_modules(benchmarks.__path__)
      if not m.name.startswith("_") and m.name not in _LIBRARY
      and not m.name.endswith("_training")
  )


def main(argv: list[str]) -> None:
  if not argv or argv[0] in ("-h", "--help", "list"):
    print(__doc__)
    print("experiments:", ", ".join(experiments()))
    return
  name, rest = argv[0], argv[1:]
  if name not in experiments():
    raise SystemExit(
        f"unknown experiment {name!r}; choose one of: {', '.join(experiments())}"
    )
  importlib.import_module(f"benchmarks.{name}").main(rest)


if __name__ == "__main__":
  main(sys.argv[1:])
