"""Runs one experiment: `python -m benchmarks <experiment> [options]`.

`python -m benchmarks list` names the experiments; each module's `--help`
gives its options (all take `--quick` for a seconds-long smoke run).
`python -m benchmarks report` assembles `benchmarks/RESULTS.md` from their
results.
"""

import importlib
import pkgutil
import sys

import benchmarks

# Commands that are not experiments: their module in `benchmarks.lib`.
COMMANDS = {"report": "benchmarks.lib.report"}


def experiments() -> list[str]:
  """The experiments: the modules of `benchmarks/` (the shared code is in
  the `benchmarks.lib` package)."""
  return sorted(
      m.name for m in pkgutil.iter_modules(benchmarks.__path__)
      if not m.ispkg and not m.name.startswith("_")
  )


def main(argv: list[str]) -> None:
  if not argv or argv[0] in ("-h", "--help", "list"):
    print(__doc__)
    print("experiments:", ", ".join(experiments()))
    print("commands:", ", ".join(COMMANDS))
    return
  name, rest = argv[0], argv[1:]
  if name in COMMANDS:
    module = COMMANDS[name]
  elif name in experiments():
    module = f"benchmarks.{name}"
  else:
    raise SystemExit(
        f"unknown experiment {name!r}; choose one of:"
        f" {', '.join(experiments() + list(COMMANDS))}"
    )
  importlib.import_module(module).main(rest)


if __name__ == "__main__":
  main(sys.argv[1:])
