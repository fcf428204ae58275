"""The README's Python snippets and what each must print.

`tests/test_docs.py` runs them in this process; `tests/test_packaging.py`
runs the first from a wheel installed in a fresh environment, outside the
repository. Each snippet prints one line of what it found, and shows that
line as a comment after its `print`.
"""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", README, re.S)

# The most prose the README may hold (words outside code blocks and table
# rows): about five minutes of reading.
MAX_PROSE_WORDS = 1000

_NUMBER = r"[-+0-9.e]+"
# What each snippet prints, by its position in the README.
PRINTED = (
    re.compile(rf"loss (?P<loss>{_NUMBER}), rate (?P<rate>{_NUMBER}) \(bound"
               rf" (?P<bound>{_NUMBER})\), (?P<phase>searching|tuning), (?P<cuts>\d+) cuts"),
    re.compile(rf"loss (?P<first>{_NUMBER}) -> (?P<last>{_NUMBER}), rate (?P<rate>{_NUMBER})"
               rf" \(bound (?P<bound>{_NUMBER})\), (?P<phase>searching|tuning),"
               rf" (?P<cuts>\d+) cuts"),
    re.compile(rf"best rate (?P<rate>{_NUMBER}) \(reward (?P<reward>{_NUMBER})\) of"
               rf" (?P<runs>\d+) runs"),
)
BETA, MOMENTUM = 0.33, 0.9  # exptest's default cut factor; the first snippet's trace(0.9)


def prose_words(markdown: str) -> int:
  """Words outside fenced code blocks and table rows."""
  words, in_code = 0, False
  for line in markdown.splitlines():
    if line.startswith("```"):
      in_code = not in_code
    elif not in_code and not line.lstrip().startswith("|"):
      words += len(line.split())
  return words


def shown_output(index: int) -> str:
  """The output a snippet shows as a comment after its `print`."""
  comments = [line[2:] for line in SNIPPETS[index].splitlines() if line.startswith("# ")]
  assert comments, f"README snippet {index} shows no output as a comment"
  return comments[-1]


def check_output(index: int, out: str) -> dict:
  """Asserts that snippet `index` printed a line that makes sense.

  Args:
    index: the snippet's position in the README.
    out: what it printed.

  Returns:
    The printed line's fields (numbers as floats).
  """
  found = PRINTED[index].search(out)
  assert found, f"README snippet {index} printed {out!r}"
  shown = PRINTED[index].search(shown_output(index))
  assert shown, f"README snippet {index}'s comment {shown_output(index)!r} is not its output"
  fields = {k: v if k == "phase" else float(v) for k, v in found.groupdict().items()}
  if index == 0:
    # Full batch with `sgd_correction=False`: the search ends and the loss
    # reaches zero. The rate is the effective-rate rule's start (the README's
    # paragraph on reading the summary): the bound times (1 - momentum), then
    # beta per cut.
    assert fields["loss"] < 1e-2 and fields["phase"] == "tuning" == shown["phase"]
    assert fields["rate"] == pytest.approx(
        fields["bound"] * (1 - MOMENTUM) * BETA ** fields["cuts"], rel=1e-2)
  elif index == 1:
    # A network trained by Adam's scaling: the loss falls tenfold, the rate
    # sits below the bound (Adam moves every weight by about the rate).
    assert fields["last"] < 0.1 * fields["first"]
    assert 0 < fields["rate"] < fields["bound"]
  else:
    # Gradient descent on |w|^2 for 20 steps: every rate with |1 - 2 rate| <
    # 0.9 reaches a reward of about 1; the search tried rounds x arms rates.
    assert 0.05 < fields["rate"] < 0.95 and fields["reward"] >= 0.99
    assert fields["runs"] == float(shown["runs"]) == 32
  return fields
