"""The inner rule: ExpTest's starting rate and window for momentum and Adam."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_exptest
from optax_exptest import Decision
from optax_exptest._src import inner_rules
from optax_exptest._src.window import window_size
from tests.helpers import sweep
from tests.problems import logistic_problem, quadratic_problem, train


@pytest.mark.parametrize("beta", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("nesterov", [False, True])
def test_heavy_ball_gain_is_one_over_one_minus_beta(beta, nesterov):
  rule = inner_rules.classify(optax.trace(beta, nesterov=nesterov))
  assert rule.kind == inner_rules.LINEAR and not rule.measures_rho
  np.testing.assert_allclose(rule.rho, 1 / (1 - beta), rtol=1e-4)


@pytest.mark.parametrize("make", [
    optax.scale_by_adam, optax.scale_by_rms, optax.scale_by_adamax,
    lambda: optax.chain(optax.scale_by_adam(), optax.trace(0.9)),
])
def test_adaptive_scalings_are_normalizing(make):
  rule = inner_rules.classify(make())
  assert rule.kind == inner_rules.NORMALIZING and rule.measures_rho


_UNKNOWN_INNERS = [
    optax.clip_by_global_norm(1.0),  # neither linear nor normalizing
    optax.scale_by_schedule(lambda c: 1.0 / (c + 1)),  # no limit
    optax.scale(-1.0),  # a negative gain
]


@pytest.mark.parametrize(
    "inner", sweep(_UNKNOWN_INNERS, default=[]))
def test_other_inners_are_unknown_and_unchanged(inner):
  assert inner_rules.classify(inner).kind == inner_rules.UNKNOWN
  loss, params = quadratic_problem()
  plain = optax_exptest.exptest(0.3, sgd_correction=False)
  wrapped = optax_exptest.exptest(0.3, inner=inner, sgd_correction=False)
  state = wrapped.init(params)
  assert float(state.learning_rate) == pytest.approx(0.3)
  grads = jax.grad(loss)(params)
  _, s_plain = plain.update(grads, plain.init(params), params, value=loss(params))
  _, s_wrapped = wrapped.update(grads, state, params, value=loss(params))
  assert float(s_wrapped.learning_rate) == pytest.approx(0.3)
  assert int(s_wrapped.window.base_length) == int(s_plain.window.base_length)


def test_plain_path_has_no_gain():
  assert inner_rules.classify(None).kind == inner_rules.PLAIN
  loss, params = quadratic_problem()
  tx = optax_exptest.exptest(0.3)
  state = tx.init(params)
  _, state = tx.update(jax.grad(loss)(params), state, params, value=loss(params))
  assert float(state.learning_rate) == np.float32(0.3)
  assert float(state.scales.rho) == 1.0
  assert int(state.window.base_length) == int(
      window_size(state.scales.loss, jnp.float32(0.3)))


@pytest.mark.parametrize("beta", [0.5, 0.9])
def test_momentum_starts_at_one_minus_beta_and_windows_follow_eta_over_one_minus_beta(beta):
  loss, params = quadratic_problem()
  eta_max = 0.3
  plain = optax_exptest.exptest(eta_max, sgd_correction=False)
  tx = optax_exptest.exptest(eta_max, inner=optax.trace(beta), sgd_correction=False)
  state = tx.init(params)
  np.testing.assert_allclose(float(state.learning_rate), (1 - beta) * eta_max, rtol=1e-4)
  value, grads = jax.value_and_grad(loss)(params)
  _, s = tx.update(grads, state, params, value=value)
  _, p = plain.update(grads, plain.init(params), params, value=value)
  # The same window as gradient descent at eta_max: W(L0, rho * eta).
  assert int(s.window.base_length) == int(p.window.base_length)
  # After a cut (here a divergence: three non-finite losses in a row) the
  # window grows as 1 / (rho * eta) too.
  for _ in range(3):
    _, s = tx.update(grads, s, params, value=jnp.nan)
  assert int(s.decision) == Decision.DIVERGED
  cut = 0.33 * (1 - beta) * eta_max
  np.testing.assert_allclose(float(s.learning_rate), cut, rtol=1e-4)
  expected = window_size(s.scales.loss, jnp.float32(cut / (1 - beta)))
  assert abs(int(s.window.length) - max(int(expected), 4)) <= 1


def test_adam_starts_where_its_first_loss_decrease_matches_gradient_descent():
  loss, params, _ = logistic_problem()
  eta_max = 0.5
  tx = optax_exptest.exptest(eta_max, inner=optax.scale_by_adam(), sgd_correction=False)
  plain = optax_exptest.exptest(eta_max, sgd_correction=False)
  value, grads = jax.value_and_grad(loss)(params)
  updates, s = tx.update(grads, tx.init(params), params, value=value)
  _, p = plain.update(grads, plain.init(params), params, value=value)
  g = np.concatenate([np.ravel(x) for x in jax.tree.leaves(grads)]).astype(float)
  u = np.concatenate([np.ravel(x) for x in jax.tree.leaves(updates)]).astype(float)
  # Adam's first update is sign(g) (bias-corrected): rho = ||g||_1 / ||g||^2.
  rho = np.abs(g).sum() / (g @ g)
  np.testing.assert_allclose(float(s.scales.rho), rho, rtol=1e-3)
  np.testing.assert_allclose(float(s.learning_rate), eta_max / rho, rtol=1e-3)
  # The first step decreases the loss (to first order) as GD's at eta_max.
  np.testing.assert_allclose(-(g @ u), eta_max * (g @ g), rtol=1e-3)
  # And the windows are gradient descent's at the bound.
  assert int(s.window.base_length) == int(p.window.base_length)


@pytest.mark.parametrize("mask", [
    {"w": True, "b": False}, lambda params: {"w": True, "b": False},
], ids=["tree", "callable"])
@pytest.mark.slow  # Adam's rule itself is fast; here, under a masked chain.
def test_masked_weight_decay_inside_inner_keeps_adams_rule(mask):
  # AdamW's decay masks a tree of the parameters': the scalar probe cannot
  # run it, a probe with the parameters' tree can.
  loss, params, _ = logistic_problem()
  adamw = optax.chain(optax.scale_by_adam(), optax.add_decayed_weights(0.1, mask))
  assert inner_rules.classify(adamw).kind == inner_rules.UNKNOWN
  assert inner_rules.classify(adamw, params).kind == inner_rules.NORMALIZING
  value, grads = jax.value_and_grad(loss)(params)

  def after_first_step(inner):
    tx = optax_exptest.exptest(0.5, inner=inner, sgd_correction=False)
    return jax.jit(lambda p: tx.update(grads, tx.init(p), p, value=value)[1])(params)

  state, adam = after_first_step(adamw), after_first_step(optax.scale_by_adam())
  # At zero parameters the decay adds nothing: Adam's rate and window.
  assert float(adam.learning_rate) < 0.5 / 2
  np.testing.assert_allclose(
      float(state.learning_rate), float(adam.learning_rate), rtol=1e-6)
  assert int(state.window.base_length) == int(adam.window.base_length)


def test_momentum_end_to_end_converges_without_collapse():
  loss, params = quadratic_problem(seed=3)
  flat = jax.flatten_util.ravel_pytree(params)[0]
  unravel = jax.flatten_util.ravel_pytree(params)[1]
  hessian = jax.hessian(lambda v: loss(unravel(v)))(flat)
  eta_max = 2 / float(jnp.linalg.eigvalsh(hessian)[-1])
  tx = optax_exptest.exptest(eta_max, inner=optax.trace(0.9), sgd_correction=False)
  final, state, (values, decisions, _, _) = train(tx, loss, params, 600)
  decisions = np.asarray(decisions)
  assert not np.any(decisions == Decision.DIVERGED)
  assert int(state.phase) == 1
  step = jnp.linalg.solve(hessian, jax.grad(lambda v: loss(unravel(v)))(flat))
  minimum = float(loss(unravel(flat - step)))
  assert float(loss(final)) - minimum < 0.05 * (float(values[0]) - minimum)


@pytest.mark.slow  # Momentum's end-to-end run is fast.
def test_adam_end_to_end_cuts_and_converges():
  loss, params, _ = logistic_problem(seed=1)
  tx = optax_exptest.exptest(1.0, inner=optax.scale_by_adam(), sgd_correction=False)
  final, state, (values, decisions, rates, _) = train(tx, loss, params, 800)
  decisions = np.asarray(decisions)
  assert not np.any(decisions == Decision.DIVERGED)
  assert np.all(np.isfinite(np.asarray(values)))
  # It starts below eta_max (Adam's step is ~1 per coordinate) and ends lower.
  assert float(rates[0]) < 1.0
  fixed = optax.chain(optax.scale_by_adam(), optax.scale(-float(rates[0])))

  def step(carry, _):
    p, s = carry
    u, s = fixed.update(jax.grad(loss)(p), s, p)
    return (optax.apply_updates(p, u), s), None

  (p, _), _ = jax.lax.scan(step, (params, fixed.init(params)), None, length=800)
  assert int(state.num_cuts) >= 1
  assert float(loss(final)) <= float(loss(p)) + 1e-3
