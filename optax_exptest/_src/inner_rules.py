"""What ExpTest's starting rate and window become for an `inner` transformation.

The paper's bound `eta_max` and window `W` (`window.window_size`) are
derived for gradient descent, whose step is `eta * g`. With `inner=` the step
is `eta * u`, `u` the inner transformation's output, and the same `eta` moves
the parameters by a different amount. The rule here maps an inner rate to the
gradient-descent rate with the same first-order loss decrease per step, its
*effective rate*
`eta_eff = rho * eta`, and uses it where the paper uses `eta`:

* the run starts at `eta_0 = eta_max / rho` (so that `eta_eff = eta_max`, the
  bound), and
* the window `W` is computed at `rho * eta` at every rate.

`rho` depends on what the inner transformation is, which is found by probing
it (`classify`) rather than by its name or state type, so wrappers,
`optax.chain`s of known pieces and user-written equivalents are covered:

* **linear** inners (`u` scales with `g`: `optax.trace(beta)`, Nesterov,
  `optax.ema`, `optax.scale(c)`): for a constant gradient `g` their output
  tends to `G g`, `G` the DC gain. Heavy ball has `G = 1 / (1 - beta)`
  (Nesterov too), and on the slow directions that set the window's decay
  heavy ball at rate `eta` is gradient descent at `eta / (1 - beta)`.
  `rho = G`, exactly, from the probe.
* **normalizing** inners (`u` does not scale with `g`: `scale_by_adam`,
  `scale_by_rms`, `scale_by_adamax`, sign methods): no constant maps the two
  rates, since `u` does not grow with `g`. `rho` is measured at the first
  finite loss as `<g_1, u_1> / <g_1, g_1>`, the ratio of the first step's
  first-order loss decrease to gradient descent's (for Adam, whose first
  update is `sign(g_1)`, `||g_1||_1 / ||g_1||^2`); the run starts at
  `eta_max / rho`, where its first step decreases the loss as fast as
  gradient descent's at the bound, and keeps that `rho` for its windows.
  For a linear inner at a constant gradient the same ratio is its DC gain:
  one rule, "match the loss decrease per step", covers both kinds.
* anything else (`unknown`: a shape-dependent inner, one that fails on the
  probe, a negative gain): `rho = 1`, today's behaviour.

The plain path (`inner=None`) has `rho = 1` and no probe.
"""

import functools
import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "InnerRule", "classify", "effective_rate", "measured_rho", "PLAIN",
    "start_rate",
]

# Kinds of inner transformation.
PLAIN = "plain"
LINEAR = "linear"
NORMALIZING = "normalizing"
UNKNOWN = "unknown"

# The probe's gradients: two sizes 16x apart (a degree-1 and a degree-0
# homogeneous update tell apart by far more than float error).
_SMALL, _LARGE = 0.25, 4.0
_PROBE_STEPS = 6
_TOLERANCE = 1e-3


class InnerRule(NamedTuple):
  """How ExpTest maps its rate to a gradient-descent rate for an inner.

  Attributes:
    kind: `"plain"` (no inner), `"linear"`, `"normalizing"` or `"unknown"`.
    rho: for linear inners (their DC gain), 1 otherwise.
    measures_rho: whether `rho` is measured at the first finite loss as
      `<g, u> / <g, g>` (normalizing inners; `measured_rho`).

  Examples:
    >>> import optax
    >>> from optax_exptest._src import inner_rules
    >>> rule = inner_rules.classify(optax.trace(0.9))
    >>> rule.kind, round(rule.rho, 4)
    ('linear', 10.0)
    >>> inner_rules.classify(optax.scale_by_adam()).kind
    'normalizing'
  """

  kind: str
  rho: float = 1.0
  measures_rho: bool = False


def effective_rate(learning_rate: Any, rho: Any) -> Any:
  """The gradient-descent rate with the loss decrease per step of the
  inner's `learning_rate`: `rho * eta`. The paper's windows and bound are
  in these units."""
  return learning_rate * rho


def start_rate(effective: Any, rho: Any) -> Any:
  """The inner's rate whose effective rate is `effective`: `effective /
  rho` (the run starts at `eta_max / rho`, applied at `init` with the probe's
  `rho` and again at the first finite loss with a measured one)."""
  return effective / rho


def _probe_tree(params: Optional[optax.Params]) -> optax.Params:
  """The probe's parameters: one float32 scalar, or `params`' tree of arrays
  of one element each (for inners whose masks or options follow the
  parameters' tree, such as `optax.masked`)."""
  if params is None:
    return jnp.zeros((1,), jnp.float32)
  return jax.tree.map(
      lambda x: jnp.zeros((1,) * jnp.ndim(x), jnp.float32), params
  )


def _responses(
    inner: optax.GradientTransformation, size: float,
    params: Optional[optax.Params] = None,
) -> list[float]:
  """The inner's outputs (its first entry) for a constant gradient `size`."""
  params = _probe_tree(params)
  grads = jax.tree.map(lambda x: jnp.full_like(x, size), params)
  state = inner.init(params)
  out = []
  for _ in range(_PROBE_STEPS):
    u, state = inner.update(grads, state, params, value=jnp.zeros(()))
    leaf = jax.tree.leaves(u)[0]
    out.append(float(jnp.reshape(leaf, (-1,))[0]))
  return out


def _dc_gain(u: list[float]) -> float:
  """The limit of `u_k = G - C q^k` by Aitken's extrapolation of the tail."""
  a, b, c = u[-3:]
  second = (c - b) - (b - a)
  if abs(second) <= 1e-12 * max(abs(c), 1e-30):
    return c
  return c - (c - b) ** 2 / second


def classify(
    inner: Optional[optax.GradientTransformation],
    params: Optional[optax.Params] = None,
) -> InnerRule:
  """Finds the kind of `inner` by probing it on constant scalar gradients.

  Two constant gradients of sizes 0.25 and 4 go through six updates each,
  outside any trace. Outputs 16x apart mean a linear inner, whose DC gain
  (the limit for a constant gradient, by Aitken's extrapolation) is `rho`;
  equal outputs mean a normalizing inner. Anything else, a probe that
  raises, or a gain that is not finite and positive, is `unknown`.

  The probe's parameters are a single scalar, or with `params` a tree of
  their structure (one-element arrays): an inner that needs the parameters'
  tree, such as weight decay with a mask (`optax.masked`,
  `optax.add_decayed_weights(wd, mask)`), fails on a scalar.

  Args:
    inner: the `inner` given to `exptest`, or None.
    params: the parameters whose tree the probe copies, or None for a
      scalar. Only their structure and ranks are read (they may be traced).

  Returns:
    The `InnerRule`.

  Examples:
    >>> import optax
    >>> from optax_exptest._src import inner_rules
    >>> inner_rules.classify(None).kind
    'plain'
    >>> round(inner_rules.classify(optax.trace(0.5, nesterov=True)).rho, 4)
    2.0
    >>> inner_rules.classify(optax.scale_by_rms()).kind
    'normalizing'
    >>> import jax.numpy as jnp
    >>> params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    >>> adamw = optax.chain(optax.scale_by_adam(), optax.add_decayed_weights(
    ...     0.1, mask={"w": True, "b": False}))
    >>> inner_rules.classify(adamw).kind, inner_rules.classify(adamw, params).kind
    ('unknown', 'normalizing')
  """
  if inner is None:
    return InnerRule(PLAIN)
  try:
    with jax.ensure_compile_time_eval():
      small = _responses(optax.with_extra_args_support(inner), _SMALL, params)
      large = _responses(optax.with_extra_args_support(inner), _LARGE, params)
  except Exception:  # pylint: disable=broad-except
    return InnerRule(UNKNOWN)
  if not all(math.isfinite(x) for x in small + large) or small[0] == 0:
    return InnerRule(UNKNOWN)
  ratios = [big / s for s, big in zip(small, large) if s != 0]
  scale = _LARGE / _SMALL
  if all(abs(r / scale - 1) < _TOLERANCE for r in ratios):
    gain = _dc_gain(small) / _SMALL
    earlier = _dc_gain(small[:-1]) / _SMALL
    # A gain that still moves (a schedule) has no limit to use.
    settled = abs(earlier - gain) <= _TOLERANCE * abs(gain)
    if settled and math.isfinite(gain) and gain > 0:
      return InnerRule(LINEAR, rho=gain)
    return InnerRule(UNKNOWN)
  if all(abs(r - 1) < _TOLERANCE for r in ratios) and small[-1] > 0:
    return InnerRule(NORMALIZING, measures_rho=True)
  return InnerRule(UNKNOWN)


def measured_rho(
    grads: optax.Updates, updates: optax.Updates, dtype: jnp.dtype
) -> jax.Array:
  """`<g, u> / <g, g>`: the inner's first-order loss decrease per unit of GD's.

  A step `-eta u` decreases the loss to first order by `eta <g, u>`, gradient
  descent's `-eta g` by `eta <g, g>`; the ratio is the factor `rho` that
  makes the two decreases equal. It is the DC gain for a linear inner at a
  constant gradient, and `||g||_1 / ||g||^2` for Adam's first update
  `sign(g)`. 1 when it is not finite and positive (a zero gradient, an
  update against the gradient, an overflow).

  Args:
    grads: this step's gradient.
    updates: the inner transformation's output for it.
    dtype: the float dtype of the result.

  Returns:
    A positive scalar of `dtype`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_exptest._src import inner_rules
    >>> g = jnp.array([3.0, -1.0])
    >>> round(float(inner_rules.measured_rho(g, jnp.sign(g), jnp.float32)), 4)
    0.4
  """
  # `sum(mul)` rather than `optax.tree.vdot`: vdot's tensordot rounds in
  # another order, and `rho` must stay bit-identical to the elementwise sum.
  dot = lambda a, b: optax.tree.sum(optax.tree.mul(optax.tree.cast(a, dtype),
                                                   optax.tree.cast(b, dtype)))
  ratio = dot(grads, updates) / dot(grads, grads)
  return jnp.where(jnp.isfinite(ratio) & (ratio > 0), ratio, 1).astype(dtype)


@functools.lru_cache(maxsize=64)
def classify_on_tree(
    inner: optax.GradientTransformationExtraArgs,
    treedef: Any,
    ranks: tuple[int, ...],
) -> InnerRule:
  """`classify` on a tree of `treedef` (cached: `update` asks at
  every eager call and every trace)."""
  params = jax.tree.unflatten(treedef, [jnp.zeros((1,) * r) for r in ranks])
  return classify(inner, params)
