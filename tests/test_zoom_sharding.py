"""`zoom` across processes: two local CPU processes match one with 8 devices."""
import json
import os
import socket
import subprocess
import sys

import jax
import pytest

from examples import zoom_multihost


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
