"""The arm space of a zooming search: `[0, 1]`, its map to learning rates and
back, and the gaps left by a set of balls in it.

Arm `x` in `[0, 1]` stands for the learning rate `low + x (high - low)`
(`scale="linear"`) or `low (high / low)^x` (`scale="log"`); `position` is the
inverse. Balls `[x - r, x + r]` around the arms cover parts of `[0, 1]`;
`gaps` lists the rest, which is where a zooming search activates new arms.
"""

import math
from typing import Literal, NamedTuple, Sequence

import numpy as np
import numpy.typing as npt

# Gaps of the covering shorter than this do not count: floating-point
# rounding of `x - r` must not activate spurious arms.
GAP_TOLERANCE = 1e-12


class ArmGeometry(NamedTuple):
  """The map between arm positions in `[0, 1]` and learning rates.

  Attributes:
    low: the learning rate of arm 0.
    high: the learning rate of arm 1, `> low`.
    scale: `"linear"` or `"log"` (then `low > 0`).

  Examples:
    >>> from optax_exptest._src.arm_geometry import ArmGeometry
    >>> geometry = ArmGeometry(1e-3, 1e-1, "log")
    >>> round(float(geometry.learning_rate(0.5)), 6)
    0.01
    >>> round(float(geometry.position(0.01)), 6)
    0.5
  """

  low: float
  high: float
  scale: Literal["linear", "log"]

  def learning_rate(self, position: npt.ArrayLike) -> np.ndarray:
    """Maps arm positions in `[0, 1]` to learning rates in `[low, high]`.

    Args:
      position: arm positions, any shape.

    Returns:
      The learning rates, float64, clipped to `[low, high]` (no rounding
      past the ends).
    """
    x = np.asarray(position, dtype=np.float64)
    if self.scale == "log":
      rate = np.exp(math.log(self.low) + x * math.log(self.high / self.low))
    else:
      rate = self.low + x * (self.high - self.low)
    return np.clip(rate, self.low, self.high)

  def position(self, learning_rate: npt.ArrayLike) -> np.ndarray:
    """Maps learning rates to arm positions: the inverse of `learning_rate`.

    Args:
      learning_rate: rates in `[low, high]`, any shape; rates outside are
        clipped to the range first.

    Returns:
      The positions, float64, in `[0, 1]`.
    """
    lrs = np.clip(np.asarray(learning_rate, np.float64), self.low, self.high)
    if self.scale == "log":
      u = np.log(lrs / self.low) / math.log(self.high / self.low)
    else:
      u = (lrs - self.low) / (self.high - self.low)
    return np.clip(u, 0.0, 1.0)


def gaps(lows: np.ndarray, highs: np.ndarray) -> list[tuple[float, float]]:
  """The parts of `[0, 1]` outside all intervals `[lows, highs]`, left to right.

  Gaps shorter than `GAP_TOLERANCE` are left out.

  Args:
    lows: the intervals' left ends.
    highs: their right ends, one per left end.

  Returns:
    The gaps `(start, end)`, sorted.

  Examples:
    >>> import numpy as np
    >>> from optax_exptest._src.arm_geometry import gaps
    >>> gaps(np.array([0.0, 0.6]), np.array([0.4, 0.8]))
    [(0.4, 0.6), (0.8, 1.0)]
  """
  if lows.size == 0:
    return [(0.0, 1.0)]
  order = np.argsort(lows, kind="stable")
  lo, hi = np.minimum(lows[order], 1.0), highs[order]
  # reach[i]: how far [0, .] is covered by the intervals before the i-th.
  reach = np.maximum(np.concatenate([[0.0], np.maximum.accumulate(hi)[:-1]]), 0.0)
  found = [(float(reach[i]), float(lo[i]))
           for i in np.flatnonzero(lo > reach + GAP_TOLERANCE)]
  end = max(float(hi.max()), 0.0)
  if end < 1.0 - GAP_TOLERANCE:
    found.append((end, 1.0))
  return found


def covers_unit_interval(positions: Sequence[float], radii: Sequence[float]) -> bool:
  """Whether the closed balls `[x - r, x + r]` cover `[0, 1]` (up to 1e-12).

  Args:
    positions: the balls' centres in `[0, 1]`.
    radii: their radii, one per centre.

  Returns:
    True when every point of `[0, 1]` lies in some ball.

  Examples:
    >>> from optax_exptest.zooming import covers_unit_interval
    >>> covers_unit_interval([0.25, 0.75], [0.25, 0.25])
    True
    >>> covers_unit_interval([0.25, 0.75], [0.2, 0.25])
    False
  """
  x, r = np.asarray(positions, np.float64), np.asarray(radii, np.float64)
  return not gaps(x - r, x + r)
