"""The notebooks run end to end (with small settings), so they cannot rot."""
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["quickstart", "zooming", "flax"])
def test_notebook_runs(name, monkeypatch):
  monkeypatch.setenv("OPTAX_EXPTEST_SMOKE", "1")
  monkeypatch.setenv("MPLBACKEND", "Agg")
  # The kernel is a fresh process: one CPU device, whatever the tests use.
  monkeypatch.setenv("XLA_FLAGS", "")
  nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
  outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
  if name in ("quickstart", "flax"):
    assert "test accuracy:" in text
  if name == "zooming":
    assert "best rate" in text


def test_notebooks_are_built_from_their_script():
  """`build_notebooks.py` is the source; the .ipynb files match it."""
  import importlib.util
  spec = importlib.util.spec_from_file_location(
      "build_notebooks", NOTEBOOKS / "build_notebooks.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  for name, cells in [("quickstart", module.QUICKSTART), ("zooming", module.ZOOMING),
                      ("flax", module.FLAX)]:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert [c.source for c in nb.cells] == [c.source for c in cells]
