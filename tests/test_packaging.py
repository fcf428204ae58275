"""What a user installs: a light `import optax_exptest`, submodules as
attributes, extras that say when they are missing, and a wheel that runs the
README's first example in a fresh environment, outside the repository."""
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

import optax_exptest
from readme_snippets import ROOT, SNIPPETS, check_output

# The extras' packages: `import optax_exptest` loads none of them.
EXTRAS = ("flax", "matplotlib", "optuna", "ray", "tensorflow_datasets")


def _python(code: str, cwd, python=sys.executable, env=None) -> str:
  """Runs `code` in a fresh interpreter; returns what it printed."""
  done = subprocess.run([str(python), "-c", code], cwd=cwd, env=env, text=True,
                        capture_output=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return done.stdout


def _env_of_the_repository():
  return dict(os.environ, PYTHONPATH=str(ROOT))


def test_import_is_light_and_submodules_are_attributes(tmp_path):
  out = _python(f"""
import sys
import optax_exptest
print(sorted(m for m in {EXTRAS!r} if m in sys.modules))
names = (optax_exptest.plotting.plot_run.__name__, optax_exptest.flax_utils.TrainState.__name__,
         optax_exptest.integrations.__name__, optax_exptest.datasets.__name__)
print(*names)
print("matplotlib" in sys.modules)
""", tmp_path, env=_env_of_the_repository())
  loaded, names, matplotlib_loaded = out.splitlines()
  assert loaded == "[]"
  assert names == "plot_run TrainState optax_exptest.integrations optax_exptest.datasets"
  assert matplotlib_loaded == "False"  # the plotting module imports it on first call


def test_without_flax_help_works_and_flax_utils_names_the_extra(tmp_path):
  out = _python("""
import sys
sys.modules["flax"] = None  # as if Flax were not installed
import inspect, pydoc
import optax_exptest
assert "flax_utils" not in dir(optax_exptest)
inspect.getmembers(optax_exptest)
print(len(pydoc.render_doc(optax_exptest)) > 1000)
try:
  optax_exptest.flax_utils
except ImportError as e:
  print(e)
""", tmp_path, env=_env_of_the_repository())
  rendered, message = out.splitlines()
  assert rendered == "True"
  assert 'pip install "optax_exptest[flax]"' in message


@pytest.mark.parametrize("name, engine", [("ZoomingSampler", "optuna"),
                                          ("ZoomingSearcher", "ray")])
def test_integrations_name_their_missing_extra(name, engine, monkeypatch):
  monkeypatch.setitem(sys.modules, engine, None)  # as if it were not installed
  # Submodules an earlier test imported would still resolve from the cache.
  for loaded in [m for m in sys.modules if m.startswith(engine + ".")]:
    monkeypatch.delitem(sys.modules, loaded)
  module = f"optax_exptest.integrations._{engine}"
  monkeypatch.delitem(sys.modules, module, raising=False)
  with pytest.raises(ImportError, match=rf'{name} needs {engine}.*optax_exptest\[{engine}\]'):
    getattr(optax_exptest.integrations, name)


@pytest.mark.slow
def test_wheel_in_a_fresh_environment_runs_the_readme_example(tmp_path):
  """The README's Install: a wheel, its dependencies pinned by
  requirements.lock (from PyPI through pip), the first example run outside
  the repository."""
  source = tmp_path / "clone"  # a copy: building writes build/ and egg-info
  shutil.copytree(ROOT / "optax_exptest", source / "optax_exptest",
                  ignore=shutil.ignore_patterns("__pycache__"))
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(ROOT / name, source / name)
  pip = lambda python, *args: subprocess.run(
      [str(python), "-m", "pip", "--disable-pip-version-check", *map(str, args)],
      check=True, capture_output=True, text=True, timeout=900)
  pip(sys.executable, "wheel", "--no-deps", "-w", tmp_path / "dist", source)
  (wheel,) = (tmp_path / "dist").glob("optax_exptest-*.whl")
  files = zipfile.ZipFile(wheel).namelist()
  assert {"optax_exptest/plotting.py", "optax_exptest/flax_utils.py",
          "optax_exptest/py.typed"} <= set(files)
  assert not [f for f in files if f.split("/")[0] in ("tests", "benchmarks", "examples", "data")]

  subprocess.run([sys.executable, "-m", "venv", tmp_path / "env"], check=True, timeout=300)
  python = tmp_path / "env" / "bin" / "python"
  pip(python, "install", "-q", "-c", ROOT / "requirements.lock", f"{wheel}[plots]")
  outside = tmp_path / "elsewhere"
  outside.mkdir()
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
  check_output(0, _python(SNIPPETS[0], outside, python, env))
  where, drawn = _python("""
import matplotlib; matplotlib.use("Agg")
import optax_exptest
print(optax_exptest.__file__)
print(type(optax_exptest.plotting.plot_run([1.0, 0.5, 0.25], [0, 1, 0])).__name__)
""", outside, python, env).splitlines()
  assert where.startswith(str(tmp_path / "env")), where  # the wheel's copy
  assert drawn == "Axes"
