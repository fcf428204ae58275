"""`ZoomingSearcher`: zooming search as a Ray Tune searcher."""

import os
from typing import Any, Optional, Union

import numpy as np
from ray.tune.search import Searcher

from optax_exptest._src.checkpoint import read_checkpoint
from optax_exptest._src.checkpoint import write_checkpoint
from optax_exptest._src.zooming_search import ZoomingSearch


class ZoomingSearcher(Searcher):
  """A Ray Tune searcher that suggests learning rates by zooming.

  Each trial's config holds `param_name`: one rate, or with
  `arms_per_trial=k` a list of `k` rates that the trial trains as one
  vmapped round (`optax_exptest.zooming.make_round`), which uses a device
  better than `k` trials of one rate. The trial reports `metric`: a reward
  in `[0, 1]` (or `1 - value` when `mode="min"`), or a list of `k` of them.
  Trials are pulls by id, so any order of completion is fine; an errored
  trial counts as diverged (reward 0).

  Args:
    search: the `ZoomingSearch` to drive (updated in place).
    param_name: the config key of the rate(s).
    arms_per_trial: rates per trial, `>= 1`.
    metric, mode: as for every Ray Tune searcher (`mode` "max" or "min");
      pass them here unless the `Tuner` has a `param_space` (Ray Tune sets
      them from `TuneConfig` only then).

  Examples:
    >>> from optax_exptest import ZoomingSearch
    >>> from optax_exptest.integrations import ZoomingSearcher
    >>> searcher = ZoomingSearcher(ZoomingSearch(0.0, 1.0, horizon=8),
    ...                            metric="reward", mode="max")
    >>> searcher.suggest("trial_a")
    {'lr': 0.5}
    >>> searcher.on_trial_complete("trial_a", {"reward": 0.7})
    >>> searcher.search.best
    (0.5, 0.7)
  """

  def __init__(
      self,
      search: ZoomingSearch,
      *,
      param_name: str = "lr",
      arms_per_trial: int = 1,
      metric: Optional[str] = None,
      mode: Optional[str] = None,
  ):
    if not isinstance(search, ZoomingSearch):
      raise ValueError(
          f"ZoomingSearcher: search must be a ZoomingSearch, got {search!r}.")
    if isinstance(arms_per_trial, bool) or not isinstance(arms_per_trial, int) \
        or arms_per_trial < 1:
      raise ValueError(
          "ZoomingSearcher: arms_per_trial must be an integer >= 1, got"
          f" arms_per_trial={arms_per_trial!r}.")
    if mode not in (None, "max", "min"):
      raise ValueError(f"ZoomingSearcher: mode must be 'max' or 'min', got mode={mode!r}.")
    super().__init__(metric=metric, mode=mode)
    self.search = search
    self._param_name, self._k = param_name, arms_per_trial
    self._trials: dict[str, list[int]] = {}  # trial id -> pull ids

  def set_search_properties(self, metric, mode, config, **spec) -> bool:
    if self._metric is None and metric:
      self._metric = metric
    if self._mode is None and mode:
      self._mode = mode
    return True

  def suggest(self, trial_id: str) -> Optional[dict[str, Any]]:
    if self._metric is None:
      raise ValueError(
          "ZoomingSearcher: metric is not set; pass metric= (and mode=) to"
          " ZoomingSearcher (Ray Tune sets them from TuneConfig only when the"
          " Tuner has a param_space)."
      )
    pulls = self.search.ask_pulls(self._k)
    self._trials[trial_id] = [p.id for p in pulls]
    rates = [p.learning_rate for p in pulls]
    return {self._param_name: rates[0] if self._k == 1 else rates}

  def on_trial_complete(self, trial_id: str, result: Optional[dict] = None,
                        error: bool = False) -> None:
    ids = self._trials.pop(trial_id, None)
    if ids is None:
      return
    if error or not result or self._metric not in result:
      rewards = np.zeros(len(ids))
    else:
      rewards = np.asarray(result[self._metric], np.float64).reshape(-1)
      if self._mode == "min":
        rewards = 1.0 - rewards
      if rewards.size != len(ids):
        raise ValueError(
            f"ZoomingSearcher: trial {trial_id} reported {rewards.size}"
            f" rewards for {len(ids)} rates in {self._metric!r}.")
    self.search.tell_ids(ids, rewards)

  def save(self, checkpoint_path: Union[str, os.PathLike]) -> None:
    write_checkpoint(checkpoint_path, dict(
        search=self.search.state_dict(), trials=self._trials,
        metric=self._metric, mode=self._mode))

  def restore(self, checkpoint_path: Union[str, os.PathLike]) -> None:
    state = read_checkpoint(checkpoint_path)
    self.search = ZoomingSearch.from_state_dict(state["search"])
    self._trials = {k: list(v) for k, v in state["trials"].items()}
    self._metric, self._mode = state["metric"], state["mode"]
