"""The optimizers the experiments compare, by name.

Three kinds:

* the paper's baselines, run at `f * eta_max` for a grid of factors `f`
  (PyTorch's defaults where they differ from optax's, as the paper used
  PyTorch: RMSprop decay 0.99 with eps outside the square root);
* ExpTest and what a user would reach for instead of choosing a rate:
  Adadelta (lr 1.0, the paper's), optax.contrib's learning-rate-free
  optimizers at their defaults, `reduce_on_plateau` over SGD at eta_max and
  schedule-free SGD at eta_max (it needs a rate; eta_max is the information
  ExpTest gets too);
* ExpTest beyond the paper: wrapping Adam's scaling, and momentum, as
  `inner=` transformations that ExpTest resets faithfully.

Every factory takes `(learning_rate, eta_max, full_batch)` (traced arrays are
fine: a sweep vmaps over them) and returns a
`GradientTransformationExtraArgs` whose `update` accepts `value=`.
"""

from typing import Callable, NamedTuple, Optional

import optax

import optax_exptest


class Optimizer(NamedTuple):
  """How an experiment builds and evaluates one optimizer."""

  make: Callable[..., optax.GradientTransformationExtraArgs]
  uses_grid: bool  # run at f * eta_max for every factor f of the experiment
  label: str
  # Parameters to evaluate (schedule-free SGD evaluates an average).
  eval_params: Optional[Callable] = None


def _extra(tx):
  return optax.with_extra_args_support(tx)


def _exptest(inner=None):
  def make(learning_rate, eta_max, full_batch):
    del learning_rate
    inner_tx = inner() if inner else None
    return optax_exptest.exptest(eta_max, inner=inner_tx, sgd_correction=not full_batch)
  return make


def _plateau(learning_rate, eta_max, full_batch):
  del learning_rate
  # optax's default patience of 10 counts `value`s; over mini-batch losses an
  # epoch-long accumulation is the usual setting.
  accumulation = 1 if full_batch else 200
  return optax.chain(
      optax.sgd(eta_max),
      optax.contrib.reduce_on_plateau(accumulation_size=accumulation),
  )


def _schedule_free_eval(state, params):
  return optax.contrib.schedule_free_eval_params(state, params)


OPTIMIZERS: dict[str, Optimizer] = {
    # The paper's baselines (a learning-rate grid).
    "sgd": Optimizer(lambda lr, e, fb: _extra(optax.sgd(lr)), True, "SGD"),
    "momentum": Optimizer(
        lambda lr, e, fb: _extra(optax.sgd(lr, momentum=0.9)), True, "SGD w/ mom."
    ),
    "adam": Optimizer(lambda lr, e, fb: _extra(optax.adam(lr)), True, "Adam"),
    "rmsprop": Optimizer(
        lambda lr, e, fb: _extra(
            optax.rmsprop(lr, decay=0.99, eps=1e-8, eps_in_sqrt=False)
        ),
        True, "RMSprop",
    ),
    # No rate chosen.
    "adadelta": Optimizer(
        lambda lr, e, fb: _extra(optax.adadelta(1.0)), False, "Adadelta"
    ),
    "exptest": Optimizer(_exptest(), False, "ExpTest"),
    "prodigy": Optimizer(
        lambda lr, e, fb: optax.contrib.prodigy(), False, "Prodigy"
    ),
    "dadapt_adamw": Optimizer(
        lambda lr, e, fb: optax.contrib.dadapt_adamw(), False, "D-Adapt AdamW"
    ),
    "dog": Optimizer(lambda lr, e, fb: _extra(optax.contrib.dog()), False, "DoG"),
    "mechanize": Optimizer(
        lambda lr, e, fb: optax.contrib.mechanize(optax.sgd(1.0)), False,
        "Mechanic (SGD)",
    ),
    "cocob": Optimizer(lambda lr, e, fb: _extra(optax.contrib.cocob()), False, "COCOB"),
    "reduce_on_plateau": Optimizer(_plateau, False, "SGD + reduce on plateau"),
    "schedule_free_sgd": Optimizer(
        lambda lr, e, fb: optax.contrib.schedule_free_sgd(e), False,
        "Schedule-free SGD", _schedule_free_eval,
    ),
    # ExpTest beyond the paper.
    "exptest_momentum": Optimizer(
        _exptest(lambda: optax.trace(decay=0.9)), False, "ExpTest w/ mom."
    ),
    "exptest_adam": Optimizer(
        _exptest(optax.scale_by_adam), False, "ExpTest (Adam scaling)"
    ),
    # The same rules with the other two inners, at optax's defaults.
    "exptest_nesterov": Optimizer(
        _exptest(lambda: optax.trace(decay=0.9, nesterov=True)), False,
        "ExpTest w/ Nesterov",
    ),
    "exptest_rms": Optimizer(
        _exptest(optax.scale_by_rms), False, "ExpTest (RMS scaling)"
    ),
}

PAPER = ["exptest", "adam", "sgd", "momentum", "rmsprop", "adadelta"]
PEERS = [
    "prodigy", "dadapt_adamw", "dog", "mechanize", "cocob", "reduce_on_plateau",
]
BEYOND = ["exptest_momentum", "exptest_adam"]


def eval_params(name: str, state, params):
  """The parameters an optimizer's run is evaluated at."""
  fn = OPTIMIZERS[name].eval_params
  return params if fn is None else fn(state, params)



# ExpTest as the newer experiments build it: by the name of its inner update,
# with keyword arguments a command line can pass through (`--exptest-kwargs`),
# so that a changed algorithm reruns them with one line.
EXPTEST_INNERS: dict[str, Optional[Callable[[], optax.GradientTransformation]]] = {
    "sgd": None,
    "momentum": lambda: optax.trace(decay=0.9),
    "adam": optax.scale_by_adam,
}


def build_exptest(learning_rate, inner: str = "sgd", *, weight_decay: float = 0.0,
                  weight_decay_mask=None, policy_options=None,
                  **kwargs) -> optax.GradientTransformationExtraArgs:
  """`optax_exptest.exptest(learning_rate, inner=EXPTEST_INNERS[inner]())`.

  Args:
    learning_rate: ExpTest's starting rate (a bound, in gradient-descent
      units).
    inner: a key of `EXPTEST_INNERS`.
    weight_decay: if positive, `optax.add_decayed_weights(weight_decay,
      weight_decay_mask)` is chained after the inner update, inside ExpTest,
      so that the decay is scaled by ExpTest's rate as AdamW's is by its own.
    weight_decay_mask: the mask of `optax.add_decayed_weights`.
    policy_options: fields of the policy named by `kwargs["policy"]`
      (`"probing"` by default), for variants given as JSON.
    **kwargs: more arguments of `optax_exptest.exptest`.

  Returns:
    The transformation.
  """
  if inner not in EXPTEST_INNERS:
    raise ValueError(f"inner must be one of {sorted(EXPTEST_INNERS)}, got {inner!r}")
  make = EXPTEST_INNERS[inner]
  parts = [make()] if make else []
  if weight_decay:
    parts.append(optax.add_decayed_weights(weight_decay, weight_decay_mask))
  inner_tx = None if not parts else parts[0] if len(parts) == 1 else optax.chain(*parts)
  if policy_options is not None:
    name = kwargs.get("policy", "probing")
    kwargs["policy"] = {
        "paper": optax_exptest.policies.PaperPolicy,
        "probing": optax_exptest.policies.ProbingPolicy,
    }[name](**policy_options)
  return optax_exptest.exptest(learning_rate, inner=inner_tx, **kwargs)
