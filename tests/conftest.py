"""Shared test configuration and helpers.

Every test module can request the ``x64`` fixture to run once in float32 and once
with ``jax_enable_x64`` on, the way optax's tests cover both precisions.
"""
import os

# Eight host devices for the sharding tests; must be set before jax is imported.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(params=[False, True], ids=["f32", "x64"])
def x64(request):
  """Runs the test body with x64 disabled and enabled."""
  with jax.enable_x64(request.param):
    yield request.param
