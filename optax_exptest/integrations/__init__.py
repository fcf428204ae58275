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
`optax_exptest[bench]` for Optuna and `optax_exptest[ray]` for Ray Tune.
"""

__all__ = ("ZoomingSampler", "ZoomingSearcher")


def __getattr__(name):
  if name == "ZoomingSampler":
    from optax_exptest.integrations._optuna import ZoomingSampler  # pylint: disable=g-import-not-at-top
    return ZoomingSampler
  if name == "ZoomingSearcher":
    from optax_exptest.integrations._ray import ZoomingSearcher  # pylint: disable=g-import-not-at-top
    return ZoomingSearcher
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
