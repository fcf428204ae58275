"""`ZoomingSampler`: zooming search as an Optuna sampler."""

import math
from typing import Any, Callable, Optional

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optax_exptest._src.zooming_search import ZoomingSearch


class ZoomingSampler(optuna.samplers.BaseSampler):
  """An Optuna sampler that searches one float parameter by zooming.

  The parameter `param_name` (a `FloatDistribution`, log or not, giving the
  search's `low`, `high` and `scale`) is sampled by a `ZoomingSearch`;
  every other parameter by `fallback` (random by default). The sampler keeps
  no state: for each trial it rebuilds the search from the study's trials
  (complete ones told, running ones pending, failed or pruned ones told as
  reward 0, a diverged run) and asks one pull. Worker processes sharing a
  storage therefore share one search. Two workers sampling at the same
  instant would see the same trials and get the same rate, so a trial first
  replays, in trial-number order, the pulls of the running trials numbered
  before it that have not sampled the parameter yet (each asks what that
  trial is asking now), and takes the pull after them. The search and the
  replay come from one read of the trials, so a trial that writes its rate
  meanwhile counts once.

  Rewards: objective values must be rewards in `[0, 1]` (e.g.
  `optax_exptest.accuracy_reward`), higher is better for a study that
  maximises; a study that minimises uses `1 - value`. Pass `to_reward` to
  map other values.

  Args:
    horizon: the planned number of trials (the search's `horizon`).
    param_name: the parameter to zoom over.
    to_reward: optional `value -> reward in [0, 1]`.
    fallback: sampler for the other parameters (default
      `optuna.samplers.RandomSampler(seed)`).
    seed: the search's seed (ties), and the fallback's.
    **search_kwargs: more `ZoomingSearch` arguments (`radius_scale`,
      `variant`).

  Examples:
    >>> import optuna
    >>> from optax_exptest.integrations import ZoomingSampler
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> study = optuna.create_study(
    ...     direction="maximize", sampler=ZoomingSampler(horizon=12))
    >>> study.optimize(
    ...     lambda t: 1 - abs(t.suggest_float("lr", 1e-4, 1.0, log=True) - 0.03),
    ...     n_trials=12)
    >>> bool(0.02 < study.best_params["lr"] < 0.05)
    True
  """

  def __init__(
      self,
      *,
      horizon: int,
      param_name: str = "lr",
      to_reward: Optional[Callable[[float], float]] = None,
      fallback: Optional[optuna.samplers.BaseSampler] = None,
      seed: int = 0,
      **search_kwargs: Any,
  ):
    if not isinstance(param_name, str) or not param_name:
      raise ValueError(
          f"ZoomingSampler: param_name must be a non-empty string, got"
          f" param_name={param_name!r}."
      )
    # Validates the arguments now rather than at the first trial.
    ZoomingSearch(1e-3, 1.0, horizon=horizon, seed=seed, **search_kwargs)
    self._horizon, self._param_name, self._seed = horizon, param_name, seed
    self._to_reward, self._search_kwargs = to_reward, dict(search_kwargs)
    self._fallback = fallback or optuna.samplers.RandomSampler(seed=seed)

  def infer_relative_search_space(self, study, trial):
    return {}

  def sample_relative(self, study, trial, search_space):
    return {}

  def before_trial(self, study, trial):
    self._fallback.before_trial(study, trial)

  def after_trial(self, study, trial, state, values):
    self._fallback.after_trial(study, trial, state, values)

  def reseed_rng(self) -> None:
    self._fallback.reseed_rng()

  def _reward(self, study: optuna.Study, value: float) -> float:
    if self._to_reward is not None:
      return float(self._to_reward(value))
    if study.direction == optuna.study.StudyDirection.MINIMIZE:
      return 1.0 - float(value)
    return float(value)

  def search(self, study: optuna.Study, distribution: FloatDistribution,
             trials: Optional[list[FrozenTrial]] = None) -> ZoomingSearch:
    """The `ZoomingSearch` rebuilt from `study`'s trials so far (or from
    `trials`, a snapshot of them)."""
    if trials is None:
      trials = study.get_trials(deepcopy=False)
    search = ZoomingSearch(
        distribution.low, distribution.high,
        scale="log" if distribution.log else "linear", horizon=self._horizon,
        seed=self._seed, **self._search_kwargs)
    rates, rewards = [], []
    for t in trials:
      if self._param_name not in t.params:
        continue
      if t.state == TrialState.COMPLETE:
        reward = self._reward(study, t.value)
      elif t.state == TrialState.RUNNING:
        reward = math.nan
      else:  # failed or pruned: counts as diverged
        reward = 0.0
      rates.append(t.params[self._param_name])
      rewards.append(reward)
    if rates:
      rates = np.clip(rates, distribution.low, distribution.high)
      search.record(rates, rewards)
    return search

  def sample_independent(self, study: optuna.Study, trial: FrozenTrial,
                         param_name: str, param_distribution: BaseDistribution):
    if param_name != self._param_name or not isinstance(
        param_distribution, FloatDistribution) or param_distribution.step:
      return self._fallback.sample_independent(
          study, trial, param_name, param_distribution)
    # One snapshot for both: a trial that samples between two reads would
    # be in neither the search nor the replay, and its pull asked twice.
    trials = study.get_trials(deepcopy=False)
    search = self.search(study, param_distribution, trials)
    for _ in self._sampling_before(trials, trial):
      search.ask(1)
    return float(search.ask(1)[0])

  def _sampling_before(self, trials: list[FrozenTrial],
                       trial: FrozenTrial) -> list[FrozenTrial]:
    """Running trials numbered before `trial` that have not sampled the
    parameter yet: other workers sampling at this instant."""
    return [t for t in trials
            if t.state == TrialState.RUNNING and t.number < trial.number
            and self._param_name not in t.params]
