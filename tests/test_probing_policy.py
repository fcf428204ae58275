"""The probing policy: probes both ways, doubling tests, the horizon.

The decrease test is checked against SciPy's Welch test and for its type-I
error at `delta`; the search against its stopping rule on scripted losses;
the state machine's rules (faults, vmap) under the policy as properties.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats

import optax_exptest
from optax_exptest import Decision, Phase
from optax_exptest._src import block_sums
from optax_exptest._src import window as window_lib
from optax_exptest._src.probing_policy import batch_means
from optax_exptest._src.probing_policy import decrease_test
from optax_exptest._src.probing_policy import ProbingPolicy

from helpers import assert_trees_all_close


def _window(losses, dtype=jnp.float32):
  """A window holding `losses` (at most its capacity: one loss a slot)."""
  losses = jnp.asarray(losses, dtype)
  w = window_lib.init(max(1024, losses.shape[-1]), dtype, measuring=False)
  sums = w.losses.sums.at[: losses.shape[-1]].set(losses)
  return w._replace(losses=block_sums.BlockSums(
      sums=sums, count=jnp.asarray(losses.shape[-1], jnp.int32),
      block_size=jnp.ones((), jnp.int32)))


def _halves(n, first, second, noise, rng):
  return np.concatenate([
      first + noise * rng.normal(size=n // 2),
      second + noise * rng.normal(size=n - n // 2),
  ])


@pytest.mark.parametrize("n, start", [(160, 0), (240, 80), (99, 0)])
def test_decrease_test_is_scipys_welch_test_on_batch_means(n, start, x64):
  rng = np.random.default_rng(n)
  losses = _halves(n, 1.0, 0.85, 0.2, rng)
  delta, batches = 0.1, 8
  window = _window(losses, jnp.float64 if x64 else jnp.float32)
  p = decrease_test(window, jnp.asarray(start), delta, jnp.asarray(0.0), batches)
  middle = (start + n) // 2
  a, _ = batch_means(window, jnp.asarray(start), jnp.asarray(middle), batches)
  b, _ = batch_means(window, jnp.asarray(middle), jnp.asarray(n), batches)
  expected = scipy.stats.ttest_ind(
      (1 - delta) * np.asarray(a, float), np.asarray(b, float),
      equal_var=False, alternative="greater").pvalue
  np.testing.assert_allclose(float(p), expected, rtol=1e-3 if not x64 else 1e-6)


def test_batch_means_are_the_means_of_equal_consecutive_batches():
  losses = np.arange(64, dtype=np.float32)
  means, counts = batch_means(_window(losses), jnp.asarray(16), jnp.asarray(48), 4)
  np.testing.assert_array_equal(np.asarray(counts), [8, 8, 8, 8])
  np.testing.assert_allclose(np.asarray(means), [19.5, 27.5, 35.5, 43.5])


@pytest.mark.parametrize("decrease, low, high", [
    (0.1, 0.03, 0.075),   # at delta: the type-I error is alpha
    (0.05, 0.0, 0.02),    # less than delta: kept less often than alpha
    (0.3, 0.95, 1.0),     # far more than delta: kept (power)
])
def test_decrease_tests_type_one_error_at_delta(decrease, low, high):
  """i.i.d. noise around a known decrease: the rate is kept (p < alpha) at
  the rate alpha when the decrease is exactly delta."""
  rng = np.random.default_rng(0)
  trials, n, alpha = 2000, 200, 0.05
  losses = np.stack([_halves(n, 1.0, 1.0 - decrease, 0.3, rng) for _ in range(trials)])
  p = jax.jit(jax.vmap(lambda x: decrease_test(
      _window(x), jnp.asarray(0), 0.1, jnp.asarray(0.0), 8)))(jnp.asarray(losses))
  kept = float(np.mean(np.asarray(p) < alpha))
  assert low <= kept <= high, kept


def _scripted(scores, steps, probe_steps=20, **kwargs):
  """A run whose loss depends only on the rate (`scores(rate)`, plus a
  little noise), on a parameter the constant gradient moves: the search's
  decisions, rates and parameters."""
  rng = np.random.default_rng(0)
  noise = jnp.asarray(0.01 * rng.normal(size=steps), jnp.float32)
  tx = optax_exptest.exptest(
      0.1, policy=ProbingPolicy(probe_steps=probe_steps, first_test=20), **kwargs)
  params = jnp.zeros(2)

  def step(carry, i):
    p, s = carry
    value = scores(s.learning_rate) + noise[i]
    u, s = tx.update(jnp.ones(2), s, p, value=value)
    p = optax.apply_updates(p, u)
    return (p, s), (s.decision, s.learning_rate, p)

  (p, s), (decisions, rates, trajectory) = jax.jit(
      lambda: jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps)))()
  return np.asarray(decisions), np.asarray(rates), np.asarray(trajectory), s


def test_the_search_stops_at_the_first_worse_probe_and_resumes_the_best():
  # Scores fall up to a rate of 0.9, then rise: the probes run at 0.1,
  # 0.1 / 0.33, 0.1 / 0.33^2 = 0.918 and 0.1 / 0.33^3.
  scores = lambda rate: (jnp.log(rate) - jnp.log(0.9)) ** 2 + 1.0
  decisions, rates, trajectory, state = _scripted(scores, 120)
  probes = np.nonzero(decisions == Decision.PROBE)[0]
  np.testing.assert_array_equal(probes, [19, 39, 59])
  (end,) = np.nonzero(decisions == Decision.BEST_PROBE)[0]
  assert end == 79  # the fourth probe, at 2.78, is the first worse one
  best = 0.1 / 0.33**2
  np.testing.assert_allclose(rates[end], best, rtol=1e-5)
  assert int(state.phase) == Phase.TUNING
  # Each probe starts from the anchor; the parameters return to those at
  # the best probe's (the third's) last loss, 19 steps of -best: its steps
  # are kept.
  np.testing.assert_allclose(trajectory[[19, 39, 59]], 0.0, atol=1e-6)
  np.testing.assert_allclose(trajectory[end], -best * 19, rtol=1e-5)
  # The history lists each probe's rate and score, and the return to the best.
  events = optax_exptest.exptest_summary(state)["history"]
  assert [e["decision_name"] for e in events[:4]] == ["probe"] * 3 + ["best_probe"]
  probed = 0.1 / 0.33 ** np.arange(4)
  np.testing.assert_allclose([e["rate_before"] for e in events[:4]], probed, rtol=1e-5)
  np.testing.assert_allclose([e["score"] for e in events[:4]],
                             np.asarray(scores(jnp.asarray(probed))), atol=0.01)
  assert events[3]["p_value"] > 0.05 and events[2]["p_value"] < 0.05


def test_a_first_step_up_that_is_worse_turns_the_search_down():
  scores = lambda rate: (jnp.log(rate) - jnp.log(0.011)) ** 2 + 1.0
  decisions, rates, _, _ = _scripted(scores, 140)
  ended = np.nonzero(decisions != Decision.NONE)[0]
  # 0.1 (best), 0.3 (worse: turn), 0.033 (better), 0.011 (better),
  # 0.0037 (worse: back to 0.011).
  np.testing.assert_array_equal(ended[:5], [19, 39, 59, 79, 99])
  assert decisions[99] == Decision.BEST_PROBE
  np.testing.assert_allclose(rates[99], 0.1 * 0.33**2, rtol=1e-4)


def test_a_probe_that_diverges_scores_worst_and_the_run_recovers():
  # On (p - 3)^2 the rates 0.05, 0.15 and 0.45 converge ever faster and
  # 1.36 diverges: its losses pass 1e3 L0 within its first 10 steps. The
  # scores are compared as numbers (`probe_alpha=0`): the batch means of a
  # noiseless exponential decay vary too much for a significant ranking.
  loss = lambda p: jnp.sum((p - 3.0) ** 2)
  tx = optax_exptest.exptest(
      0.05, policy=ProbingPolicy(probe_steps=20, first_test=20, probe_alpha=0.0))
  params = jnp.zeros(3)

  def step(carry, _):
    p, s = carry
    value, grads = jax.value_and_grad(loss)(p)
    u, s = tx.update(grads, s, p, value=value)
    return (optax.apply_updates(p, u), s), (s.decision, s.learning_rate)

  (p, s), (decisions, rates) = jax.jit(lambda: jax.lax.scan(
      step, (params, tx.init(params)), None, length=300))()
  decisions, rates = np.asarray(decisions), np.asarray(rates)
  np.testing.assert_array_equal(
      np.nonzero(decisions == Decision.PROBE)[0], [19, 39, 59])
  (end,) = np.nonzero(decisions == Decision.BEST_PROBE)[0]
  assert 60 < end < 79  # cut short by the faults
  np.testing.assert_array_equal(decisions[end - 2:end], Decision.SKIPPED)
  np.testing.assert_allclose(rates[end], 0.05 / 0.33**2, rtol=1e-5)
  assert np.all(np.isfinite(np.asarray(p)))
  assert float(loss(p)) < 1e-6


@pytest.mark.slow  # Four probing runs, vmapped and single.
def test_arms_in_different_phases_under_vmap_match_single_runs():
  loss = lambda p, t: jnp.sum((p - 1.0) ** 2) * (1 + 0.1 * jnp.sin(t))

  def run(rate, steps=150):
    tx = optax_exptest.exptest(
        rate, policy=ProbingPolicy(probe_steps=10, first_test=10), horizon=steps)

    def step(carry, t):
      p, s = carry
      value, grads = jax.value_and_grad(loss)(p, t)
      u, s = tx.update(grads, s, p, value=value)
      return (optax.apply_updates(p, u), s), (s.decision, s.phase)
    return jax.lax.scan(step, (jnp.zeros(2), tx.init(jnp.zeros(2))),
                        jnp.arange(steps, dtype=jnp.float32))

  rates = jnp.array([1e-3, 0.05, 0.4, 3.0])
  (p, _), (decisions, phases) = jax.jit(jax.vmap(run))(rates)
  phases = np.asarray(phases)
  # Some arms tune while others still probe at some step.
  assert np.any((phases == Phase.TUNING).any(0) & (phases == Phase.SEARCHING).any(0))
  for i, rate in enumerate(rates):
    (pi, _), (di, _) = jax.jit(run)(rate)
    np.testing.assert_array_equal(np.asarray(decisions[i]), np.asarray(di))
    assert_trees_all_close(p[i], pi, rtol=1e-5)


def test_the_horizon_decays_the_rate_to_zero_over_its_last_fifth():
  # One probe longer than the run: no decision, the cooldown alone.
  tx = optax_exptest.exptest(
      0.1, policy=ProbingPolicy(probe_steps=10**6, probe_share=2.0), horizon=100)
  params = jnp.zeros(1)
  state = tx.init(params)
  steps = []
  for _ in range(100):
    u, state = tx.update(jnp.ones(1), state, params, value=1.0)
    steps.append(-float(u[0]))
  expected = 0.1 * np.clip((100 - np.arange(100)) / 20, 0, 1)
  np.testing.assert_allclose(steps, expected, rtol=1e-5)
