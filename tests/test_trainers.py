"""The benchmarks' ways of running arms give the same runs."""
import threading

import jax
import numpy as np
import pytest

from benchmarks.lib import problems, trainers


def test_balance_puts_the_costliest_jobs_first_on_the_least_loaded_device():
  costs = {"a": 13.0, "b": 13.0, "c": 13.0, "d": 13.0}
  costs.update({f"free{i}": 5.0 for i in range(11)})
  assignment = trainers.balance(costs, 2)
  assert set(assignment) == set(costs) and set(assignment.values()) == {0, 1}
  loads = [sum(c for n, c in costs.items() if assignment[n] == d) for d in (0, 1)]
  assert abs(loads[0] - loads[1]) <= max(costs.values())
  assert trainers.balance({"x": 1.0}, 2) == {"x": 0}


def test_run_on_devices_keeps_each_devices_order_and_returns_all():
  seen = {0: [], 1: []}

  def job(device, name):
    def thunk():
      seen[device].append((name, threading.get_ident()))
      return name.upper()
    return device, thunk

  jobs = {"a": job(0, "a"), "b": job(1, "b"), "c": job(0, "c"), "d": job(1, "d")}
  done = []
  results = trainers.run_on_devices(jobs, on_done=done.append)
  assert list(results) == ["a", "b", "c", "d"]
  assert results == {"a": "A", "b": "B", "c": "C", "d": "D"}
  assert [n for n, _ in seen[0]] == ["a", "c"] and [n for n, _ in seen[1]] == ["b", "d"]
  assert len({t for _, t in seen[0]}) == 1  # one thread per device
  assert sorted(done) == ["a", "b", "c", "d"]


@pytest.mark.slow  # Runs the seeds twice, vmapped and one by one.
def test_seeds_one_after_another_with_evaluation_after_equal_the_vmapped_runs():
  data = problems.mnist_on_device(subset=640)
  rates = np.array([0.01, 0.1, 0.01, 0.1], np.float32)
  seeds = np.array([0, 0, 1, 1])
  kw = dict(eta_max=0.05, batch_size=32, epochs=2, evals_per_epoch=4)
  vmapped = trainers.compile_mnist("sgd", {"learning_rate": rates}, seeds, data, **kw)()
  mapped = trainers.compile_mnist(
      "sgd", {"learning_rate": rates}, seeds, data, device=jax.devices()[0],
      evaluate_after=True, **kw)()
  np.testing.assert_allclose(mapped.losses, vmapped.losses, rtol=2e-5, atol=1e-6)
  np.testing.assert_array_equal(mapped.eval_steps, vmapped.eval_steps)
  assert mapped.accuracy.shape == vmapped.accuracy.shape == (4, 8)
  # At most one of the 100 test images flips between the two matmul orders.
  np.testing.assert_allclose(mapped.accuracy, vmapped.accuracy, atol=0.011)
  assert np.all(np.diff(vmapped.accuracy[1]) > -0.2) and vmapped.accuracy[1, -1] > 0.5
  assert mapped.seconds > 0


def test_train_in_chunks_runs_every_step_once_and_evaluates_after_each_chunk():
  import jax.numpy as jnp

  # The carry sums the step indices times a shared factor: any step run twice,
  # skipped or given the wrong index changes the sum.
  step = lambda carry, i, shared: (carry + shared * i, i)
  evaluate = lambda carry, shared: carry / shared
  compiled = {}
  run = trainers.train_in_chunks(step, evaluate, jnp.float32(0), steps=25,
                                 eval_every=10, shared=jnp.float32(2.0),
                                 compiled=compiled)
  np.testing.assert_array_equal(run.records, np.arange(25))
  np.testing.assert_array_equal(run.eval_steps, [10, 20, 25])
  # After k steps the carry is 2 * (0 + ... + k - 1).
  np.testing.assert_allclose(run.evals, [45.0, 190.0, 300.0])
  assert float(run.carry) == 600.0
  assert np.all(np.diff(run.seconds) >= 0) and run.seconds[0] >= 0
  assert sorted(compiled) == [5, 10]  # a full chunk and the shorter last one
  # The same dict again: nothing new is compiled, the run is the same.
  again = trainers.train_in_chunks(step, evaluate, jnp.float32(0), steps=25,
                                   eval_every=10, shared=jnp.float32(2.0),
                                   compiled=compiled)
  assert sorted(compiled) == [5, 10]
  np.testing.assert_allclose(again.evals, run.evals)


def test_first_reaching():
  at = np.array([100, 200, 300])
  assert trainers.first_reaching([0.5, 0.97, 0.99], 0.97, at) == 200
  assert np.isnan(trainers.first_reaching([0.5, 0.6, 0.7], 0.97, at))
  assert trainers.first_reaching([3.0, 2.0, 1.0], 2.5, at, higher_is_better=False) == 200


def test_build_exptest_chains_weight_decay_inside():
  import jax.numpy as jnp
  import optax_exptest
  from benchmarks.lib import optimizers

  params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
  grads = jax.tree.map(jnp.zeros_like, params)
  mask = {"w": True, "b": False}
  tx = optimizers.build_exptest(0.1, "momentum", weight_decay=0.5,
                                weight_decay_mask=mask, sgd_correction=False)
  updates, state = tx.update(grads, tx.init(params), params, value=1.0)
  # The masked decay does not hide momentum from the inner rule: the run
  # starts where momentum alone does, (1 - beta) x the bound.
  plain = optimizers.build_exptest(0.1, "momentum", sgd_correction=False)
  rate = optax_exptest.exptest_summary(plain.init(params))["learning_rate"]
  assert rate < 0.1
  assert optax_exptest.exptest_summary(state)["learning_rate"] == pytest.approx(rate)
  # Zero gradients: the update is the decay alone, masked, times the rate.
  np.testing.assert_allclose(updates["w"], -rate * 0.5 * np.ones((2, 2)), rtol=1e-6)
  np.testing.assert_array_equal(updates["b"], np.zeros(2))
  with pytest.raises(ValueError, match="inner must be one of"):
    optimizers.build_exptest(0.1, "lion")
