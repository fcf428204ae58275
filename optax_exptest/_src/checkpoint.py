"""Checkpoint files: JSON written atomically, read with a clear error.

`zoom` writes the search's state after every round, and the Ray Tune
searcher (`integrations.ZoomingSearcher`) on `save`; both read it back with
`read_checkpoint`. What goes in the file (a `ZoomingSearch.state_dict`, and
the caller's own keys) is the caller's; this module only makes the write
atomic and the read explicit about damage.
"""

import json
import os
import pathlib
import tempfile
from typing import Any, Union


def write_checkpoint(path: Union[str, os.PathLike], state: dict[str, Any]) -> None:
  """Writes `state` as JSON atomically: temp file, fsync, `os.replace`.

  A crash at any point leaves either the previous file or the new one, never
  a partial one; the temporary file is removed when writing fails.

  Args:
    path: the file to write; its folder is created when missing.
    state: a JSON-serialisable dict, e.g. `ZoomingSearch.state_dict()`.

  Examples:
    >>> import json, pathlib, tempfile
    >>> from optax_exptest import ZoomingSearch
    >>> from optax_exptest.zooming import write_checkpoint
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "search.json"
    >>> write_checkpoint(path, ZoomingSearch(0.0, 1.0, horizon=8).state_dict())
    >>> restored = ZoomingSearch.from_state_dict(json.loads(path.read_text()))
    >>> restored.ask(1)
    array([0.5])
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
  try:
    with os.fdopen(fd, "w") as f:
      json.dump(state, f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  try:  # Make the rename itself durable; not possible on every OS.
    dir_fd = os.open(path.parent, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(dir_fd)
  except OSError:
    pass
  finally:
    os.close(dir_fd)


def read_checkpoint(path: Union[str, os.PathLike]) -> dict[str, Any]:
  """Reads a JSON checkpoint, with a clear error when it is damaged.

  Args:
    path: a file written by `write_checkpoint` (e.g. by `zoom`).

  Returns:
    The dict that was written.

  Raises:
    ValueError: naming the file, when it is not valid JSON (corrupt or
      truncated) or does not hold a JSON object.

  Examples:
    >>> import pathlib, tempfile
    >>> from optax_exptest.zooming import read_checkpoint, write_checkpoint
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "search.json"
    >>> write_checkpoint(path, {"a": 1})
    >>> read_checkpoint(path)
    {'a': 1}
    >>> _ = path.write_text('{"a": ')  # truncated
    >>> read_checkpoint(path)
    Traceback (most recent call last):
    ...
    ValueError: checkpoint .../search.json is corrupt or truncated ...
  """
  path = pathlib.Path(path)
  try:
    state = json.loads(path.read_bytes().decode("utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ValueError(
        f"checkpoint {str(path)} is corrupt or truncated (not valid JSON:"
        f" {e}); delete it to start afresh, or restore a backup."
    ) from e
  if not isinstance(state, dict):
    raise ValueError(
        f"checkpoint {str(path)} holds a JSON {type(state).__name__}, not an"
        " object: it was not written by write_checkpoint."
    )
  return state
