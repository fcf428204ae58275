"""Tests of `ZoomingSearch`: covering, selection, batching, state, errors."""
import doctest
import importlib
import json
import math

import numpy as np
import pytest

from helpers import run_quick
from optax_exptest._src import arm_geometry
from optax_exptest._src import pull_record
from optax_exptest._src import zooming_search
from optax_exptest._src import zooming_variants
from optax_exptest._src.arm_geometry import covers_unit_interval
from optax_exptest._src.zooming_search import ZoomingSearch


def classic(low, high, **kwargs):
  """Classic zooming (Kleinberg et al.'s rules), radius_scale 1 unless given."""
  kwargs.setdefault("radius_scale", 1.0)
  return ZoomingSearch(low, high, variant="classic", **kwargs)


def peak(x, at=0.37):
  return 1 - np.abs(x - at)


def lipschitz_rewards():
  """A few 1-Lipschitz mean-reward functions on [0, 1]."""
  return {
      "peak": peak,
      "two_peaks": lambda x: np.maximum(peak(x, 0.2), peak(x, 0.8) - 0.1),
      "slope": lambda x: 0.2 + 0.7 * x,
      "sine": lambda x: 0.5 + 0.15 * np.sin(6 * x),
  }


def run(search, fn, rounds, k, noise=0.02, seed=0, on_round=None):
  rng = np.random.default_rng(seed)
  for _ in range(rounds):
    lrs = search.ask(k)
    if on_round is not None:
      on_round(search, lrs)
    search.tell(lrs, fn(lrs) + noise * rng.normal(size=lrs.shape))
  return search


def covered(search):
  arms = search.arms
  return covers_unit_interval([a.position for a in arms], [a.radius for a in arms])


@pytest.mark.parametrize("k", [1, 3, 8])
@pytest.mark.parametrize("radius_scale", [1.0, 0.1, 0.03])
@pytest.mark.parametrize("name", sorted(lipschitz_rewards()))
def test_covering_holds_after_every_round(name, radius_scale, k):
  fn = lipschitz_rewards()[name]
  search = classic(0.0, 1.0, horizon=64, radius_scale=radius_scale, seed=1)

  def check(search, lrs):
    assert covered(search)  # with the round's pulls pending (hallucinated)

  for _ in range(max(1, 64 // k)):
    run(search, fn, 1, k, on_round=check)
    assert covered(search)  # with the rewards told
  assert search.num_pulls == k * max(1, 64 // k)


def test_gap_helper_sees_gaps_and_tolerates_rounding():
  assert not covers_unit_interval([], [])
  assert covers_unit_interval([0.5], [0.5])
  assert not covers_unit_interval([0.25, 0.75], [0.2, 0.2])  # gap (0.45, 0.55)
  assert not covers_unit_interval([0.3], [0.4])  # (0.7, 1]
  assert not covers_unit_interval([0.7], [0.4])  # [0, 0.3)
  assert covers_unit_interval([0.25, 0.75], [0.25, 0.25 - 1e-14])


def test_activation_is_the_midpoint_of_the_leftmost_gap():
  search = classic(0.0, 1.0, horizon=64, radius_scale=0.1)
  search.ask(1)
  r0 = 0.1 * math.sqrt(2 * math.log(64))
  positions = [a.position for a in search.arms]
  # [0, 1] -> 0.5; then [0, 0.5 - r0) -> its midpoint; then (0.5 + r0, 1].
  assert positions[0] == 0.5
  np.testing.assert_allclose(positions[1], (0.5 - r0) / 2)
  np.testing.assert_allclose(positions[2], (1 + 0.5 + r0) / 2)
  assert len(positions) == 3


@pytest.mark.parametrize("seed", range(4))
def test_k1_small_radius_finds_the_maximiser(seed):
  search = classic(0.0, 1.0, horizon=64, radius_scale=0.1, seed=seed)
  run(search, peak, 64, 1, noise=0.02, seed=seed)
  lr, reward = search.best
  assert abs(lr - 0.37) < 0.05, (lr, reward)


def test_k1_classic_radius_explores_little():
  # Expected behaviour, not a bug: the first ball covers [0, 1] for ~8 log T
  # pulls, so classic zooming keeps pulling the midpoint.
  search = run(classic(0.0, 1.0, horizon=64), peak, 16, 1)
  assert {h["learning_rate"] for h in search.history} == {0.5}


def test_never_pulled_arms_come_first():
  search = classic(0.0, 1.0, horizon=64, radius_scale=0.1)
  lrs = search.ask(1)
  search.tell(lrs, [1.0])  # the best possible reward...
  fresh = search.ask(2)  # ...still loses to the two fresh arms
  assert lrs[0] not in fresh and len(search.arms) == 3
  assert all(a.pulls == 0 for a in search.arms if a.learning_rate in fresh)


def test_selection_takes_the_largest_index():
  search = classic(0.0, 1.0, horizon=64, radius_scale=0.1)
  lrs = search.ask(3)
  means = {lr: r for lr, r in zip(sorted(lrs), [0.2, 0.9, 0.5])}
  search.tell(lrs, [means[lr] for lr in lrs])
  # All three pulled once (same radius) and no gap opened: the best mean wins.
  assert len(search.arms) == 3
  assert search.ask(1)[0] == max(means, key=means.get)


@pytest.mark.parametrize("radius_scale", [1.0, 0.1])
@pytest.mark.parametrize("seed", range(3))
def test_batched_rounds_are_distinct(seed, radius_scale):
  k = 8
  search = classic(0.0, 1.0, horizon=256, radius_scale=radius_scale, seed=seed)
  rng = np.random.default_rng(seed)
  for _ in range(32):
    lrs = search.ask(k)
    assert len(set(lrs.tolist())) == k, lrs
    search.tell(lrs, peak(lrs) + 0.02 * rng.normal(size=k))


def test_batched_rounds_zoom_in():
  # Splits put the round's pulls next to the best arm, not on bad arms.
  search = run(classic(0.0, 1.0, horizon=256, radius_scale=0.1), peak, 24, 8)
  distance = np.abs([h["learning_rate"] - 0.37 for h in search.history])
  assert np.median(distance[-8:]) < 0.06 < np.median(distance[:8]), distance
  lr, _ = search.best
  assert abs(lr - 0.37) < 0.02


def test_an_arm_repeats_only_when_nothing_can_be_split():
  search = classic(0.0, 1.0, horizon=64, radius_scale=0.1)
  lrs = search.ask(3)
  search.tell(lrs, np.where(lrs == 0.5, 1.0, 0.1))
  # Arms at 0.3 and 0.7 with fresh balls cover the middle arm's whole ball,
  # and its mean 1 beats their indices: no split is possible.
  r0 = 0.1 * math.sqrt(2 * math.log(64))
  search._pulls.positions += [0.5 - r0 / 2, 0.5 + r0 / 2]  # pylint: disable=protected-access
  search._pulls.counts += [1, 1]  # pylint: disable=protected-access
  search._pulls.sums += [0.0, 0.0]  # pylint: disable=protected-access
  lrs = search.ask(3)
  assert lrs.tolist() == [0.5, 0.5, 0.5]


def test_first_round_splits_the_first_ball():
  # One ball covers [0, 1]; the round splits it rather than repeat 0.5.
  lrs = classic(0.0, 1.0, horizon=64).ask(4)
  assert lrs[0] == 0.5 and len(set(lrs.tolist())) == 4


def test_smaller_radius_scale_activates_more_arms():
  counts = [
      len(run(classic(0.0, 1.0, horizon=64, radius_scale=s), peak, 8, 8).arms)
      for s in (1.0, 0.3, 0.1, 0.03)
  ]
  assert counts == sorted(counts) and counts[0] < counts[-1], counts


def test_log_scale_maps_arms_log_uniformly():
  search = classic(1e-4, 1.0, scale="log", horizon=32, radius_scale=0.1)
  lrs = search.ask(8)
  assert np.all((lrs >= 1e-4) & (lrs <= 1.0))
  for a in search.arms:
    np.testing.assert_allclose(a.learning_rate, 10 ** (-4 + 4 * a.position), rtol=1e-12)
  np.testing.assert_allclose(search.learning_rate([0.0, 0.5, 1.0]), [1e-4, 1e-2, 1.0])


def test_tell_matches_rates_in_any_order_and_through_float32():
  search = classic(1e-3, 1.0, scale="log", horizon=32, radius_scale=0.1)
  lrs = search.ask(4)
  order = [2, 0]
  search.tell(lrs[order].astype(np.float32), [0.1, 0.2])
  np.testing.assert_array_equal(search.pending, lrs[[1, 3]])
  search.tell(lrs[[3, 1]], [0.3, 0.4])
  assert [h["learning_rate"] for h in search.history] == lrs[[2, 0, 3, 1]].tolist()
  assert [h["reward"] for h in search.history] == [0.1, 0.2, 0.3, 0.4]
  assert not len(search.pending)


def test_tell_sanitises_rewards():
  search = classic(0.0, 1.0, horizon=32, radius_scale=0.1)
  lrs = search.ask(5)
  search.tell(lrs, [np.nan, np.inf, -np.inf, 1.03, -0.02])
  assert [h["reward"] for h in search.history] == [0.0, 0.0, 0.0, 1.0, 0.0]
  assert [h["finite"] for h in search.history] == [False, False, False, True, True]
  assert all(not math.isnan(a.mean_reward) for a in search.arms if a.pulls)


def test_best_is_the_best_mean():
  search = classic(0.0, 1.0, horizon=32, radius_scale=0.1)
  with pytest.raises(RuntimeError, match="no reward"):
    search.best  # pylint: disable=pointless-statement
  lrs = search.ask(3)
  search.tell(lrs, [0.3, 0.8, 0.5])
  assert search.best == (lrs[1], 0.8)


@pytest.mark.parametrize("scale", ["linear", "log"])
def test_state_dict_round_trip_asks_the_same(scale):
  a = classic(1e-3, 2.0, scale=scale, horizon=64, radius_scale=0.1, seed=3)
  rng = np.random.default_rng(0)
  for _ in range(5):
    lrs = a.ask(4)
    a.tell(lrs, rng.uniform(size=4))
  a.ask(3)  # pending pulls are part of the state
  b = ZoomingSearch.from_state_dict(json.loads(json.dumps(a.state_dict())))
  assert b.state_dict() == a.state_dict()
  np.testing.assert_array_equal(b.pending, a.pending)
  b.tell(b.pending, [0.5, 0.6, 0.7])
  a.tell(a.pending, [0.5, 0.6, 0.7])
  for _ in range(5):
    la, lb = a.ask(4), b.ask(4)
    np.testing.assert_array_equal(la, lb)
    r = rng.uniform(size=4)
    a.tell(la, r)
    b.tell(lb, r)
  assert a.history == b.history
  assert json.dumps(a.state_dict()) == json.dumps(b.state_dict())


def test_load_state_dict_refuses_another_configuration():
  state = classic(0.0, 1.0, horizon=64).state_dict()
  with pytest.raises(ValueError, match="horizon=64 vs 32"):
    classic(0.0, 1.0, horizon=32).load_state_dict(state)


def test_seed_changes_the_order_of_fresh_arms_only():
  asks = [classic(0.0, 1.0, horizon=8, radius_scale=0.1, seed=s).ask(2)
          for s in range(6)]
  assert len({tuple(a) for a in asks}) > 1
  again = classic(0.0, 1.0, horizon=8, radius_scale=0.1, seed=0).ask(2)
  np.testing.assert_array_equal(again, asks[0])


@pytest.mark.parametrize("kwargs, match", [
    (dict(low=1.0, high=1.0), "low < high"),
    (dict(low=2.0, high=1.0), "low < high"),
    (dict(low=0.0, high=1.0, scale="log"), "low > 0"),
    (dict(low=-1.0, high=1.0, scale="log"), "low > 0"),
    (dict(scale="cubic"), "scale must be"),
    (dict(horizon=1), "horizon must be an integer >= 2"),
    (dict(horizon=2.5), "horizon must be"),
    (dict(radius_scale=0.0), "radius_scale must be a positive"),
    (dict(radius_scale=1e-9), "would take about"),
    (dict(seed=-1), "seed must be"),
])
def test_bad_arguments(kwargs, match):
  args = dict(low=1e-3, high=1.0, horizon=16) | kwargs
  with pytest.raises(ValueError, match=match):
    ZoomingSearch(args.pop("low"), args.pop("high"), **args)


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "2"])
def test_bad_k(k):
  with pytest.raises(ValueError, match="k must be an integer >= 1"):
    classic(0.0, 1.0, horizon=16).ask(k)


def test_bad_tell():
  search = classic(0.0, 1.0, horizon=16, radius_scale=0.1)
  with pytest.raises(ValueError, match="was not asked"):
    search.tell([0.5], [1.0])
  lrs = search.ask(3)
  with pytest.raises(ValueError, match="same length"):
    search.tell(lrs, [1.0, 0.5])
  with pytest.raises(ValueError, match="same length"):
    search.tell(lrs[None], np.ones((1, 3)))
  with pytest.raises(ValueError, match="was not asked"):
    search.tell([lrs[0], 0.123456], [1.0, 1.0])
  assert search.num_pulls == 0  # nothing recorded by a failed tell
  search.tell(lrs[:1], [1.0])
  with pytest.raises(ValueError, match="already told"):
    search.tell(lrs[:1], [1.0])


@pytest.mark.parametrize("module", [
    zooming_search, zooming_variants, pull_record, arm_geometry])
def test_docstring_examples(module):
  result = doctest.testmod(
      module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
  )
  assert result.attempted > 0 and result.failed == 0


# Spread zooming, the default.


def random_peaks(n, seed=0):
  """Noiseless peaks `1 - s |x - a|` at random places and steepness."""
  rng = np.random.default_rng(seed)
  return [(float(a), float(s)) for a, s in zip(rng.uniform(size=n), rng.uniform(1, 8, n))]


def best_found(search, fn, budget, k):
  best = 0.0
  while search.num_pulls < budget:
    lrs = search.ask(min(k, budget - search.num_pulls))
    rewards = fn(lrs)
    search.tell(lrs, rewards)
    best = max(best, float(np.max(rewards)))
  return best


def test_default_is_spread_with_radius_one_over_t_after_a_pull():
  for horizon in (3, 10, 30):
    search = ZoomingSearch(0.0, 1.0, horizon=horizon)
    assert search.variant == "spread" and search.config["radius_scale"] is None
    np.testing.assert_allclose(search.radius(1), 1 / horizon)
    assert search.radius_scale == zooming_variants.default_radius_scale(horizon)


def test_first_batched_round_is_the_grid_of_its_arms():
  lrs = ZoomingSearch(0.0, 1.0, horizon=10).ask(5)
  np.testing.assert_allclose(lrs, [0.1, 0.3, 0.5, 0.7, 0.9])
  lrs = ZoomingSearch(1e-4, 1.0, scale="log", horizon=8).ask(4)
  np.testing.assert_allclose(np.log10(lrs), [-3.5, -2.5, -1.5, -0.5])


@pytest.mark.parametrize("k", [1, 8])
def test_spread_rounds_are_spread_out_on_a_log_range(k):
  # The defaults: ask(8) on a log range gave 1e-4, 1.0125e-4, ...
  search = ZoomingSearch(1e-4, 1.0, scale="log", horizon=32, seed=1)
  rng = np.random.default_rng(0)
  for _ in range(32 // k):
    lrs = search.ask(k)
    search.tell(lrs, peak(np.log10(lrs) / 4 + 1, at=0.6) + 0.01 * rng.normal(size=k))
  rounds = {}
  for h in search.history:
    rounds.setdefault(h["round"], []).append(h["arm"])
  for i, arms in rounds.items():  # no near-duplicates within a round
    assert len(arms) == 1 or np.diff(np.sort(arms)).min() > (0.01 if i < 2 else 1e-4)
  # The first half of the budget covers [0, 1] evenly, without repeats.
  first = np.sort([h["arm"] for h in search.history[:16]])
  assert np.diff(first).min() > 0.01
  assert np.diff(np.concatenate([[0], first, [1]])).max() < 0.15


@pytest.mark.parametrize("budget", [5, 10, 20])
@pytest.mark.parametrize("k", [1, 5])
def test_spread_beats_the_grid_on_random_peaks(budget, k):
  # Mean best-found reward over 40 peaks at random places, at least the log
  # grid's (cell midpoints) of the same budget.
  found, grid = [], []
  for i, (at, slope) in enumerate(random_peaks(40)):
    fn = lambda x, at=at, slope=slope: np.clip(1 - slope * np.abs(x - at), 0, 1)
    found.append(best_found(ZoomingSearch(0.0, 1.0, horizon=budget, seed=i), fn, budget, k))
    grid.append(fn((np.arange(budget) + 0.5) / budget).max())
  assert np.mean(found) >= np.mean(grid) - 1e-9, (np.mean(found), np.mean(grid))


def test_spread_zooms_in_on_the_peak():
  search = ZoomingSearch(0.0, 1.0, horizon=20, seed=0)
  best_found(search, lambda x: peak(x, at=0.62), 20, 1)
  distance = np.abs([h["arm"] - 0.62 for h in search.history])
  assert np.median(distance[-5:]) < 0.05 < np.median(distance[:5]), distance
  assert abs(search.best[0] - 0.62) < 0.02


# Pull ids.


def test_ask_pulls_and_tell_by_id_or_pull():
  search = ZoomingSearch(1e-3, 1.0, scale="log", horizon=16)
  pulls = search.ask_pulls(3)
  assert [p.id for p in pulls] == [0, 1, 2] and {p.round for p in pulls} == {0}
  assert search.pending_pulls == pulls
  search.tell_ids([pulls[2].id], [0.7])
  search.tell([pulls[0]], [0.2])
  assert [p.id for p in search.pending_pulls] == [1]
  assert [h["pull"] for h in search.history] == [2, 0]
  assert [h["reward"] for h in search.history] == [0.7, 0.2]
  more = search.ask_pulls(2)
  assert [p.id for p in more] == [3, 4] and {p.round for p in more} == {1}


def test_tell_ids_tells_repeated_rates_apart():
  search = classic(0.0, 1.0, horizon=64, radius_scale=0.1)
  lrs = search.ask(3)
  search.tell(lrs, np.where(lrs == 0.5, 1.0, 0.1))
  r0 = 0.1 * math.sqrt(2 * math.log(64))  # as in the test of repeats above
  search._pulls.positions += [0.5 - r0 / 2, 0.5 + r0 / 2]  # pylint: disable=protected-access
  search._pulls.counts += [1, 1]  # pylint: disable=protected-access
  search._pulls.sums += [0.0, 0.0]  # pylint: disable=protected-access
  a, b, c = search.ask_pulls(3)
  assert a.learning_rate == b.learning_rate == c.learning_rate == 0.5
  search.tell_ids([b.id], [0.9])
  assert search.history[-1]["pull"] == b.id and search.pending_pulls == [a, c]


def test_bad_tell_ids():
  search = ZoomingSearch(0.0, 1.0, horizon=16)
  ids = [p.id for p in search.ask_pulls(2)]
  with pytest.raises(ValueError, match="pull id 7 is not pending"):
    search.tell_ids([7], [1.0])
  with pytest.raises(ValueError, match="given twice"):
    search.tell_ids([ids[0], ids[0]], [1.0, 1.0])
  with pytest.raises(ValueError, match="same length"):
    search.tell_ids(ids, [1.0])
  assert search.num_pulls == 0
  search.tell_ids(ids[:1], [1.0])
  with pytest.raises(ValueError, match="already told"):
    search.tell_ids(ids[:1], [1.0])


def test_pull_ids_survive_a_checkpoint():
  search = ZoomingSearch(0.0, 1.0, horizon=16)
  search.tell(search.ask_pulls(2), [0.1, 0.2])
  pending = search.ask_pulls(3)
  restored = ZoomingSearch.from_state_dict(json.loads(json.dumps(search.state_dict())))
  assert restored.pending_pulls == pending
  restored.tell_ids([pending[1].id], [0.5])
  assert restored.ask_pulls(1)[0].id == 5


def test_version_1_state_loads_as_classic_zooming():
  search = classic(0.0, 1.0, horizon=16, radius_scale=0.1)
  search.tell(search.ask(2), [0.1, 0.2])
  search.ask(1)
  state = json.loads(json.dumps(search.state_dict()))
  state["version"] = 1
  del state["config"]["variant"], state["next_id"]
  state["pending"] = [p[:2] for p in state["pending"]]
  restored = ZoomingSearch.from_state_dict(state)
  assert restored.variant == "classic" and restored.radius_scale == 0.1
  np.testing.assert_array_equal(restored.ask(2), search.ask(2))


# A version 2 state as the search wrote it before it was split into
# `pull_record` and `zooming_variants`, with the rates it asked next.
SAVED_V2 = (
    '{"version": 2, "config": {"low": 0.001, "high": 1.0, "scale": "log",'
    ' "horizon": 8, "radius_scale": 0.3, "variant": "classic", "seed": 3},'
    ' "positions": [0.5, 0.03369596700986757, 0.9663040329901325],'
    ' "counts": [1, 1, 1], "sums": [0.4, 0.9, 0.7], "pending": [[2, 1, 3]],'
    ' "next_id": 4, "num_rounds": 2, "history": ['
    '{"pull": 0, "round": 0, "arm": 0.5, "learning_rate": 0.0316227766016838,'
    ' "reward": 0.4, "finite": true},'
    ' {"pull": 1, "round": 0, "arm": 0.9663040329901325,'
    ' "learning_rate": 0.7923409447593993, "reward": 0.7, "finite": true},'
    ' {"pull": 2, "round": 1, "arm": 0.03369596700986757,'
    ' "learning_rate": 0.001262082953826977, "reward": 0.9, "finite": true}],'
    ' "rng": {"bit_generator": "PCG64", "state": {"state":'
    ' 190925293513678790023551717590265477330, "inc":'
    ' 222003063171874261427395693950637096479}, "has_uint32": 1,'
    ' "uinteger": 367860371}}'
)
ASKED_NEXT_V2 = [0.001262082953826977, 0.0316227766016838, 0.0027432022219617985]


def test_a_version_2_file_saved_before_the_split_loads():
  state = json.loads(SAVED_V2)
  restored = ZoomingSearch.from_state_dict(state)
  assert restored.state_dict() == state
  assert [p.id for p in restored.pending_pulls] == [3]
  assert restored.ask(3).tolist() == ASKED_NEXT_V2


@pytest.mark.slow
def test_benchmark_quick_run(tmp_path, capsys):
  name = "zooming_search"
  path, data = run_quick(name, tmp_path)
  assert path == tmp_path / f"{name}_quick.json"
  assert (tmp_path / f"{name}_quick.png").stat().st_size > 10_000
  for result in data["results"].values():
    for method in data["methods"]:
      row = result["summary"][f"{method} @ 5"]
      assert 0.0 <= row["best_mean"] <= 1.0
      assert len(row["best"]) == data["seeds"]
      assert row["cost"] <= 5 + 1e-9  # successive halving within the budget
  assert data["targets"] and set(data["ranks"]) == set(data["methods"])
  _check_common_random_numbers(data)
  (tmp_path / f"{name}_quick.md").unlink()
  importlib.import_module(f"benchmarks.{name}").main(
      ["--quick", "--from-json", "--out", str(tmp_path)])  # no training
  assert "Targets:" in (tmp_path / f"{name}_quick.md").read_text()
  assert "wrote" in capsys.readouterr().out


def _check_common_random_numbers(data):
  """The first full-length pull of a rate in a search seed gets the same
  reward in every method and budget (its training key depends on the rate,
  not on when the method pulled it)."""
  shared = 0
  for result in data["results"].values():
    first = {}
    for run, pulls in result["pulls"].items():
      seed = run.rsplit(" @ ", 1)[1]
      seen = set()
      for p in pulls:
        rate = f"{p['learning_rate']:.8e}"
        if p["fidelity"] != 1.0 or rate in seen:
          continue
        seen.add(rate)
        key = (seed, rate)
        if key in first:
          shared += 1
          assert p["reward"] == first[key], (run, rate)
        first.setdefault(key, p["reward"])
  assert shared > 0
