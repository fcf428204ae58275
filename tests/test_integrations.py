"""The Optuna sampler and the Ray Tune searcher, run for real.

Optuna: a study on SQLite storage, optimised by two worker processes at
once. Ray Tune: a local Ray instance, two trials at a time, one of them a
vmapped round of several rates per trial.
"""
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from optax_exptest import ZoomingSearch


def reward(lr):
  """A peak at 0.03 on a log range."""
  return max(0.0, 1 - abs(math.log10(lr) - math.log10(0.03)) / 4)


def test_optuna_sampler_asks_what_the_search_asks():
  optuna = pytest.importorskip("optuna")
  from optax_exptest.integrations import ZoomingSampler
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  study = optuna.create_study(direction="maximize", sampler=ZoomingSampler(horizon=10))
  study.optimize(lambda t: reward(t.suggest_float("lr", 1e-4, 1.0, log=True)), n_trials=10)
  rates = [t.params["lr"] for t in study.trials]
  # Each trial asks the search rebuilt from the trials before it.
  for i in range(len(rates)):
    search = ZoomingSearch(1e-4, 1.0, scale="log", horizon=10)
    if i:
      search.record(rates[:i], [t.value for t in study.trials[:i]])
    assert search.ask(1)[0] == pytest.approx(rates[i], rel=1e-12)
  np.testing.assert_allclose(rates[0], 1e-2)  # the midpoint first
  assert len(set(rates)) == 10
  assert abs(math.log10(study.best_params["lr"] / 0.03)) < 0.15


def test_optuna_sampler_minimise_fallback_and_failures():
  optuna = pytest.importorskip("optuna")
  from optax_exptest.integrations import ZoomingSampler
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  study = optuna.create_study(direction="minimize", sampler=ZoomingSampler(horizon=6))

  def objective(t):
    lr = t.suggest_float("lr", 1e-4, 1.0, log=True)
    width = t.suggest_int("width", 1, 4)  # not zoomed: the fallback
    if lr > 0.5:
      raise FloatingPointError("diverged")
    return 1 - reward(lr) + 0 * width

  study.optimize(objective, n_trials=6, catch=(FloatingPointError,))
  assert len(study.trials) == 6
  assert all(1 <= t.params["width"] <= 4 for t in study.trials)
  sampler = study.sampler
  search = sampler.search(study, study.trials[0].distributions["lr"])
  assert search.num_pulls == 6 and not len(search.pending)
  failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
  told = {round(h["learning_rate"], 12): h["reward"] for h in search.history}
  for t in failed:
    assert told[round(t.params["lr"], 12)] == 0.0
  with pytest.raises(ValueError, match="param_name"):
    ZoomingSampler(horizon=6, param_name="")
  with pytest.raises(ValueError, match="horizon"):
    ZoomingSampler(horizon=1)


def _zooming_study(n_trials):
  """A study zooming over `lr` after `n_trials`: (sampler, study, the
  distribution of `lr`)."""
  optuna = pytest.importorskip("optuna")
  from optax_exptest.integrations import ZoomingSampler
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  sampler = ZoomingSampler(horizon=8)
  study = optuna.create_study(direction="maximize", sampler=sampler)
  study.optimize(lambda t: reward(t.suggest_float("lr", 1e-4, 1.0, log=True)),
                 n_trials=n_trials)
  return sampler, study, study.trials[0].distributions["lr"]


def test_optuna_trials_sampling_at_the_same_instant_get_distinct_rates():
  sampler, study, distribution = _zooming_study(3)
  # Two workers' trials, both running, neither has sampled yet: both
  # sample from the same storage contents before either writes its rate.
  first, second = study.ask(), study.ask()
  frozen = {t.number: t for t in study.get_trials(deepcopy=False)}
  rates = [sampler.sample_independent(study, frozen[t.number], "lr", distribution)
           for t in (second, first)]
  expected = sampler.search(study, distribution).ask(2)
  assert rates[1] == pytest.approx(expected[0], rel=1e-12)  # the earlier trial
  assert rates[0] == pytest.approx(expected[1], rel=1e-12)  # takes the next pull
  assert rates[0] != pytest.approx(rates[1], rel=1e-6)


def test_optuna_trial_sampling_between_two_reads_is_not_asked_twice():
  # A worker's trial that writes its rate while another trial samples:
  # the sampler must read the trials once. Had it read them twice (the
  # search, then the trials to replay), the first read would miss the rate
  # and the second the replay, and both trials would get the same pull.
  sampler, study, distribution = _zooming_study(2)
  first, second = study.ask(), study.ask()
  before = study.get_trials(deepcopy=True)  # neither has sampled yet
  rate_first = first.suggest_float("lr", 1e-4, 1.0, log=True)

  class Racing:
    """The study as the second trial sees it: `first` samples after the
    first read."""
    direction = study.direction

    def __init__(self):
      self.reads = 0

    def get_trials(self, deepcopy=False, states=None):
      self.reads += 1
      trials = before if self.reads == 1 else study.get_trials(deepcopy=False)
      return [t for t in trials if states is None or t.state in states]

  racing = Racing()
  frozen_second = next(t for t in before if t.number == second.number)
  rate_second = sampler.sample_independent(racing, frozen_second, "lr", distribution)
  assert racing.reads == 1
  assert rate_second != pytest.approx(rate_first, rel=1e-6)
  expected = sampler.search(study, distribution, before).ask(2)
  assert [rate_first, rate_second] == pytest.approx(expected, rel=1e-12)


WORKER = textwrap.dedent("""
    import math, sys, time
    import optuna
    from optax_exptest.integrations import ZoomingSampler
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="zoom", storage=sys.argv[1],
                              sampler=ZoomingSampler(horizon=12))
    def objective(t):
      lr = t.suggest_float("lr", 1e-4, 1.0, log=True)
      time.sleep(0.2)  # the other worker samples meanwhile
      return max(0.0, 1 - abs(math.log10(lr) - math.log10(0.03)) / 4)
    study.optimize(objective, n_trials=6)
""")


@pytest.mark.slow
def test_optuna_two_worker_processes_share_a_sqlite_study(tmp_path):
  optuna = pytest.importorskip("optuna")
  storage = f"sqlite:///{tmp_path / 'study.db'}"
  optuna.create_study(study_name="zoom", storage=storage, direction="maximize")
  script = tmp_path / "worker.py"
  script.write_text(WORKER)
  workers = [subprocess.Popen([sys.executable, str(script), storage]) for _ in range(2)]
  assert [w.wait(timeout=300) for w in workers] == [0, 0]
  study = optuna.load_study(study_name="zoom", storage=storage)
  trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
  assert len(trials) == 12
  rates = [t.params["lr"] for t in trials]
  # One search shared through the storage: the workers' trials interleave
  # and the rates are (nearly all) distinct, not each worker's own sequence.
  assert len(set(np.round(np.log10(rates), 9))) >= 10, rates
  assert abs(math.log10(study.best_params["lr"] / 0.03)) < 0.25


@pytest.fixture(scope="module")
def local_ray():
  ray = pytest.importorskip("ray")
  ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
           configure_logging=False, ignore_reinit_error=True)
  yield ray
  ray.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("arms_per_trial", [1, 4])
def test_ray_tune_two_concurrent_trials(local_ray, tmp_path, arms_per_trial):
  from ray import tune
  from optax_exptest.integrations import ZoomingSearcher
  def trainable(config):  # nested: Ray's workers get it by value
    import math  # pylint: disable=g-import-not-at-top,redefined-outer-name,reimported
    from ray import tune  # pylint: disable=g-import-not-at-top,redefined-outer-name
    peak = lambda lr: max(0.0, 1 - abs(math.log10(lr) - math.log10(0.03)) / 4)
    lrs = config["lr"]
    if isinstance(lrs, list):  # a round of rates in one trial (vmapped in real use)
      tune.report({"reward": [peak(lr) for lr in lrs]})
    else:
      tune.report({"reward": peak(lrs)})

  budget = 12
  search = ZoomingSearch(1e-4, 1.0, scale="log", horizon=budget)
  searcher = ZoomingSearcher(search, arms_per_trial=arms_per_trial, metric="reward",
                             mode="max")
  tuner = tune.Tuner(
      trainable,
      tune_config=tune.TuneConfig(
          search_alg=searcher, metric="reward", mode="max",
          num_samples=budget // arms_per_trial, max_concurrent_trials=2),
      run_config=tune.RunConfig(storage_path=str(tmp_path), name="zoom",
                                verbose=0),
  )
  results = tuner.fit()
  assert len(results) == budget // arms_per_trial and not results.errors
  assert search.num_pulls == budget and not len(search.pending)
  assert max(search.history, key=lambda h: h["round"])["round"] == budget // arms_per_trial - 1
  lr, best = search.best
  assert abs(math.log10(lr / 0.03)) < 0.25 and best > 0.93, [(h['learning_rate'], h['reward']) for h in search.history]
  path = tmp_path / "searcher.json"
  searcher.save(path)
  again = ZoomingSearcher(ZoomingSearch(1e-4, 1.0, scale="log", horizon=budget))
  again.restore(path)
  assert again.search.history == search.history and again.metric == "reward"
  with pytest.raises(ValueError, match="metric is not set"):
    ZoomingSearcher(ZoomingSearch(1e-4, 1.0, scale="log", horizon=budget)).suggest("t")
