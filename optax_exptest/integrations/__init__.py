"""Zooming search inside the engines users scale on: Optuna and Ray Tune.

* `ZoomingSampler`: an Optuna sampler (`optuna.samplers.BaseSampler`) for one
  float parameter, e.g. the learning rate. It keeps no state of its own: at
  every trial it rebuilds a `ZoomingSearch` from the study's trials in the
  storage, so any number of worker processes can share one study (e.g. on
  SQLite or a database server).
* `ZoomingSearcher`: a Ray Tune searcher (`ray.tune.search.Searcher`), with
  pull ids for trial ids; one trial may train a vmapped round of several
  rates (`arms_per_trial`).

Optuna and Ray are imported when the class is first used: install
`optax_exptest[optuna]` for Optuna and `optax_exptest[ray]` for Ray Tune.
"""

__all__ = ("ZoomingSampler", "ZoomingSearcher")


# Each class, the module that holds it, and the extra that installs its engine.
_CLASSES = {
    "ZoomingSampler": ("optax_exptest.integrations._optuna", "optuna"),
    "ZoomingSearcher": ("optax_exptest.integrations._ray", "ray"),
}


def __getattr__(name):
  if name not in _CLASSES:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  import importlib  # pylint: disable=g-import-not-at-top
  module, extra = _CLASSES[name]
  try:
    return getattr(importlib.import_module(module), name)
  except ModuleNotFoundError as e:
    if e.name is None or e.name.split(".")[0] != extra:
      raise
    raise ImportError(
        f"optax_exptest.integrations.{name} needs {extra}: pip install"
        f" \"optax_exptest[{extra}]\"."
    ) from e
