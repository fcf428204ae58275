"""Tests of the vmapped rounds (`zoom`, `make_round`): one compile, sharding
(one process and two), checkpoints and resume."""
import doctest
import json
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from examples import zoom_multihost
from helpers import log_compilations
from helpers import run_quick
from optax_exptest._src import checkpoint as checkpoint_module
from optax_exptest._src import rewards
from optax_exptest._src import vmapped_rounds as zoom_module
from optax_exptest._src.vmapped_rounds import make_round
from optax_exptest._src.vmapped_rounds import zoom
from optax_exptest._src.zooming_search import ZoomingSearch


def train_fn(learning_rate, key):
  """Gradient descent on a random quadratic, in closed form (cheap to compile).

  `T` steps of rate `lr` on `h w^2 / 2` scale the loss by `(1 - lr h)^(2T)`:
  rates above `2 / h` diverge (inf, reward 0).
  """
  w0, h = 1 + 0.1 * jax.random.normal(key), 4.0
  initial = h * w0**2 / 2
  return rewards.loss_reward(initial * (1 - learning_rate * h) ** 400, initial)


def scan_train_fn(learning_rate, key):
  """A real training loop: gradient descent on a random least squares."""
  kx, kw = jax.random.split(key)
  x = jax.random.normal(kx, (32, 4))
  y = x @ jnp.arange(1.0, 5.0)
  loss = lambda w: jnp.mean((x @ w - y) ** 2)

  def step(w, _):
    value, grad = jax.value_and_grad(loss)(w)
    return w - learning_rate * grad, value

  w, losses = jax.lax.scan(step, 0.1 * jax.random.normal(kw, (4,)), None, length=20)
  return rewards.loss_curve_reward(jnp.append(losses, loss(w)))


def new_search():
  return ZoomingSearch(1e-3, 1.0, scale="log", horizon=48, radius_scale=0.1, seed=2)


KEY = jax.random.key(7)


def run_zoom(search=None, **kwargs):
  kwargs = dict(rounds=6, arms_per_round=8, key=KEY, progress=False) | kwargs
  return zoom(train_fn, search or new_search(), **kwargs)


@pytest.fixture(scope="module")
def uninterrupted():
  return run_zoom()


@pytest.mark.parametrize("fn", [train_fn, scan_train_fn])
def test_zoom_compiles_once(fn):
  key = jax.random.key(7)
  with log_compilations() as compiled:
    search = zoom(fn, new_search(), rounds=6, arms_per_round=8, key=key,
                  progress=False)
  compiles = [c for c in compiled if c.startswith("Compiling")]
  assert len(compiles) == 1 and "jit(batched)" in compiles[0], compiled
  assert search.num_rounds == 6 and search.num_pulls == 48
  assert 0.9 < search.best[1] <= 1.0


def test_zoom_is_deterministic(uninterrupted):
  assert run_zoom().history == uninterrupted.history


def test_zoom_is_ask_tell_with_per_round_keys(uninterrupted):
  search = new_search()
  for i in range(6):
    lrs = search.ask(8)
    keys = jax.random.split(jax.random.fold_in(KEY, i), 8)
    single = jax.jit(train_fn)
    search.tell(lrs, [single(jnp.float32(lr), k) for lr, k in zip(lrs, keys)])
  got = [h["reward"] for h in uninterrupted.history]
  want = [h["reward"] for h in search.history]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert [h["learning_rate"] for h in search.history][:8] == [
      h["learning_rate"] for h in uninterrupted.history][:8]
  lr, reward = uninterrupted.best
  assert 0.0 < lr <= 1.0 and 0.9 < reward <= 1.0


def test_raw_uint32_keys_work_too():
  search = run_zoom(key=jax.random.PRNGKey(3), rounds=2)
  assert search.num_pulls == 16


def test_rounds_is_the_total():
  search = run_zoom(rounds=2)
  run_zoom(search, rounds=5)
  assert search.num_rounds == 5
  run_zoom(search, rounds=3)  # nothing left to do
  assert search.num_rounds == 5


@pytest.mark.parametrize("shape, arms", [((8,), 8), ((8,), 16), ((4, 2), 8)])
def test_sharded_round_places_arms_on_devices(shape, arms):
  assert jax.device_count() == 8
  mesh = jax.make_mesh(shape, ("a", "b")[: len(shape)])
  lrs = np.geomspace(1e-3, 1.0, arms)
  fn = scan_train_fn if shape == (4, 2) else train_fn
  sharded = make_round(fn, arms_per_round=arms, key=KEY, mesh=mesh)(lrs, 3)
  plain = make_round(fn, arms_per_round=arms, key=KEY)(lrs, 3)
  assert sharded.sharding.spec == P(mesh.axis_names)
  shards = sharded.addressable_shards
  assert len({s.device for s in shards}) == 8
  per_device = arms // 8
  assert all(s.data.shape == (per_device,) for s in shards)
  # Shard i holds arms [i * per_device, (i + 1) * per_device).
  starts = sorted(s.index[0].start for s in shards)
  assert starts == list(range(0, arms, per_device))
  np.testing.assert_allclose(np.asarray(sharded), np.asarray(plain), rtol=1e-6)


def test_sharded_round_computes_one_arm_per_device():
  mesh = jax.make_mesh((8,), ("arms",))
  run = make_round(train_fn, arms_per_round=8, key=KEY, mesh=mesh)
  args = jax.ShapeDtypeStruct((8,), np.float32), jax.ShapeDtypeStruct((), np.int32)
  entry = run.jitted.lower(*args).compile().as_text().split("ENTRY")[1].splitlines()[0]
  # The partitioned program takes and returns one learning rate per device.
  assert entry.count("f32[1]") == 2 and "f32[8]" not in entry, entry


def test_sharded_zoom_matches_unsharded(uninterrupted):
  mesh = jax.make_mesh((8,), ("arms",))
  search = run_zoom(mesh=mesh)
  assert [h["learning_rate"] for h in search.history] == [
      h["learning_rate"] for h in uninterrupted.history]
  np.testing.assert_allclose(
      [h["reward"] for h in search.history],
      [h["reward"] for h in uninterrupted.history], rtol=1e-6)


def test_arms_must_fill_the_mesh():
  mesh = jax.make_mesh((8,), ("arms",))
  with pytest.raises(ValueError, match="arms_per_round=6 is not a multiple"):
    run_zoom(mesh=mesh, arms_per_round=6)


def test_checkpoint_resume_after_round_r(tmp_path, uninterrupted):
  path = tmp_path / "search.json"
  run_zoom(rounds=2, checkpoint=path)
  saved = json.loads(path.read_text())
  assert saved["search"]["num_rounds"] == 2
  search = run_zoom(checkpoint=path)  # a fresh search object, resumed
  assert search.history == uninterrupted.history
  assert search.state_dict() == uninterrupted.state_dict()
  assert json.loads(path.read_text())["search"] == uninterrupted.state_dict()


class Crash(Exception):
  pass


def counting_rounds(monkeypatch, crash_at=None):
  """Patches `make_round` to record round indices (and crash at one)."""
  seen = []
  real = make_round  # the original, not an earlier patch

  def patched(*args, **kwargs):
    run = real(*args, **kwargs)

    def counted(learning_rates, index):
      if index == crash_at:
        raise Crash(f"killed in round {index}")
      seen.append(index)
      return run(learning_rates, index)
    return counted

  monkeypatch.setattr(zoom_module, "make_round", patched)
  return seen


def test_crash_between_rounds_resumes_exactly(tmp_path, monkeypatch, uninterrupted):
  path = tmp_path / "search.json"
  seen = counting_rounds(monkeypatch, crash_at=3)
  with pytest.raises(Crash):
    run_zoom(checkpoint=path)
  assert seen == [0, 1, 2]
  seen = counting_rounds(monkeypatch)
  search = run_zoom(checkpoint=path)
  assert seen == [3, 4, 5]  # no completed round runs again
  assert search.history == uninterrupted.history
  seen = counting_rounds(monkeypatch)
  assert run_zoom(checkpoint=path).history == uninterrupted.history
  assert not seen  # a finished checkpoint runs nothing


def test_crash_while_writing_the_checkpoint(tmp_path, monkeypatch, uninterrupted):
  path = tmp_path / "search.json"
  real_replace = os.replace
  calls = []

  def failing_replace(src, dst):
    calls.append(dst)
    if len(calls) == 3:
      raise Crash("killed during os.replace")
    real_replace(src, dst)

  monkeypatch.setattr(checkpoint_module.os, "replace", failing_replace)
  with pytest.raises(Crash):
    run_zoom(checkpoint=path)
  monkeypatch.setattr(checkpoint_module.os, "replace", real_replace)
  assert os.listdir(tmp_path) == ["search.json"]  # no temporary file left
  assert json.loads(path.read_text())["search"]["num_rounds"] == 2
  search = run_zoom(checkpoint=path)
  assert search.history == uninterrupted.history


def test_crash_mid_write_keeps_the_old_file(tmp_path, monkeypatch):
  path = tmp_path / "search.json"
  checkpoint_module.write_checkpoint(path, {"a": 1})

  def failing_dump(obj, f):
    f.write('{"a": ')
    raise Crash("killed mid-write")

  monkeypatch.setattr(checkpoint_module.json, "dump", failing_dump)
  with pytest.raises(Crash):
    checkpoint_module.write_checkpoint(path, {"a": 2})
  assert json.loads(path.read_text()) == {"a": 1}
  assert os.listdir(tmp_path) == ["search.json"]


def test_resume_refuses_other_arguments(tmp_path):
  path = tmp_path / "search.json"
  run_zoom(rounds=1, checkpoint=path)
  with pytest.raises(ValueError, match="key data"):
    run_zoom(checkpoint=path, key=jax.random.key(8))
  with pytest.raises(ValueError, match="arms_per_round=8"):
    run_zoom(checkpoint=path, arms_per_round=4)
  with pytest.raises(ValueError, match="horizon=48 vs 64"):
    zoom(train_fn, ZoomingSearch(1e-3, 1.0, scale="log", horizon=64, radius_scale=0.1,
                                 seed=2),
         rounds=2, arms_per_round=8, key=KEY, checkpoint=path, progress=False)


@pytest.mark.parametrize("text, match", [
    ('{"version": 1, "search": {"vers', "corrupt or truncated"),
    ("", "corrupt or truncated"),
    ("\udcff", None),
    ("[1, 2]", "holds a JSON list"),
    ('{"version": 1}', "has no search state"),
    ('{"version": 1, "search": {"version": 2, "config": {}},'
     ' "zoom": {"key": KEY, "arms_per_round": 8}}', "incomplete search state"),
])
def test_damaged_checkpoint_names_the_file(tmp_path, text, match):
  path = tmp_path / "search.json"
  if match is None:  # bytes that are not UTF-8
    path.write_bytes(b'{"version": \xff')
    match = "corrupt or truncated"
  else:
    path.write_text(text.replace("KEY", json.dumps(zoom_module._key_data(KEY))))
  with pytest.raises(ValueError, match=match) as info:
    run_zoom(checkpoint=path)
  assert str(path) in str(info.value)


def test_progress(capsys, monkeypatch):
  run_zoom(rounds=2)
  assert capsys.readouterr().err == ""  # progress=False is silent
  run_zoom(rounds=2, progress=True)
  assert "2/2" in capsys.readouterr().err  # tqdm
  for module in ("tqdm", "tqdm.auto"):  # tqdm not installed
    monkeypatch.setitem(sys.modules, module, None)
  run_zoom(rounds=2, progress=True)
  out = capsys.readouterr().out
  assert "zoom: round 1/2, best learning rate" in out and "round 2/2" in out


def test_bad_zoom_arguments():
  with pytest.raises(ValueError, match="rounds must be an integer >= 0"):
    run_zoom(rounds=-1)
  with pytest.raises(ValueError, match="arms_per_round must be an integer >= 1"):
    run_zoom(arms_per_round=0)
  search = new_search()
  search.ask(2)
  with pytest.raises(ValueError, match="asked and not told"):
    run_zoom(search)
  with pytest.raises(ValueError, match="scalar reward"):
    zoom(lambda lr, key: jnp.ones(3) * lr, new_search(), rounds=1, arms_per_round=2,
         key=KEY, progress=False)


def test_diverged_arms_get_the_worst_reward():
  def diverging(lr, key):
    del key
    return jnp.where(lr > 0.1, jnp.nan, 0.5)

  search = zoom(diverging, new_search(), rounds=2, arms_per_round=8, key=KEY,
                progress=False)
  for h in search.history:
    assert (h["reward"], h["finite"]) == ((0.0, False) if h["learning_rate"] > 0.1
                                          else (0.5, True))


@pytest.mark.parametrize("module", [zoom_module, checkpoint_module])
def test_docstring_examples(module):
  result = doctest.testmod(
      module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
  )
  assert result.attempted > 0 and result.failed == 0


@pytest.mark.slow
def test_benchmark_quick_run(tmp_path, capsys):
  path, data = run_quick("vmapped_rounds", tmp_path)
  assert path == tmp_path / "vmapped_rounds_quick.json"
  assert data["layouts"][0]["ratio"]["median"] > 0
  assert "wrote" in capsys.readouterr().out


# Across processes: two local CPU processes match one with 8 devices.


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
  assert jax.device_count() == 8
  single = tmp_path / "single.json"
  zoom_multihost.main(["--rounds", "3", "--result", str(single)])

  multi, checkpoint = tmp_path / "multi.json", tmp_path / "zoom.json"
  env = dict(os.environ, PYTHONPATH=os.getcwd(), JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, zoom_multihost.__file__, "--launch", "2",
       "--devices-per-process", "4", "--rounds", "3",
       "--coordinator", f"localhost:{free_port()}",
       "--result", str(multi), "--checkpoint", str(checkpoint)],
      env=env, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  for i in range(2):
    assert f"process {i}/2: 4 local of 8 devices, 24 pulls" in proc.stdout
  want = json.loads(single.read_text())
  got = json.loads(multi.read_text())
  assert got["history"] == want["history"]
  assert json.loads(checkpoint.read_text())["search"] == got
