"""Activation sparsity on chosen dense layers' inputs, Linen and NNX.

`sparsify_activations(model, rules)` returns a model whose dense layers
(Linen `nn.Dense`, NNX `nnx.Linear`) see their *input* sparsified per token
when a rule names them: `NM(n, m)` keeps `n` of every `m` input features
(the contraction axis), `Unstructured(s)` keeps the top `1 - s` fraction of
`|x|` per token (Q-Sparse top-k), both with a straight-through backward
(`sparsejax.activations`). Model code is not edited: every dense call goes
through `intercept_dense`, and params keep their paths.

Rules are `sparsejax.Rule`s matched against the *layer* path with
`re.fullmatch` (`block_0/mlp/fc2`, `layers/0`; no `/kernel`), first match
wins, `Rule(path, None)` keeps a layer dense, the rule's `exclude` applies.
A pattern that does not fit a layer's input width raises a `ValueError`
naming the layer before the layer runs; a rule that matched no dense layer
is reported (`on_unused`) when the model returns: both happen at trace time
under `jit`.

Weight sparsity composes: apply `sparsify` first, then this, e.g.
`sparsify_activations(sparsify(model, sparsifier), rules)`.

**Diagnostics.** Each sparsified layer records the fraction of zeros of its
sparsified input (float32, the last call of the layer): Linen sows it into
the `"activation_sparsity"` collection when `apply` is given
`mutable=["activation_sparsity"]`; the NNX wrapper holds it in its
`achieved` variable. `achieved_sparsity` reads either as `{layer path:
fraction}`, inside a jitted step too:

>>> import flax.linen as nn, sparsejax as sj
>>> class Mlp(nn.Module):
...   @nn.compact
...   def __call__(self, x):
...     return nn.Dense(2, name="fc2")(nn.relu(nn.Dense(8, name="fc1")(x)))
>>> model = sparsify_activations(Mlp(), [sj.Rule("fc2", sj.NM(2, 4))])
>>> x = jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)
>>> params = model.init(jax.random.key(0), x)["params"]
>>> @jax.jit
... def forward(params, x):
...   y, stats = model.apply({"params": params}, x,
...                          mutable=[ACTIVATION_SPARSITY])
...   return y, achieved_sparsity(stats)
>>> y, sparsity = forward(params, x)
>>> {path: float(v) for path, v in sparsity.items()}
{'fc2': 0.5}
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
import warnings
from typing import Any, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from sparsejax import _checks
from sparsejax import activations
from sparsejax import rules as rules_lib
from sparsejax.flax import adapter
from sparsejax.flax import intercept

__all__ = ["ACTIVATION_SPARSITY", "ActivationSparse", "achieved_sparsity",
           "sparsify_activations"]

ACTIVATION_SPARSITY = "activation_sparsity"
"""The Linen collection the achieved sparsity is sown into (if mutable)."""


def _matches(rule: rules_lib.Rule, path: str) -> bool:
  return re.fullmatch(rule.path, path) is not None and (
      rule.exclude is None or re.fullmatch(rule.exclude, path) is None)


def _sow_linen(call: intercept.DenseCall, fraction: jax.Array) -> None:
  module = call.module
  if call.framework == "linen" and module.is_mutable_collection(
      ACTIVATION_SPARSITY):
    module.sow(ACTIVATION_SPARSITY, "sparsity", fraction,
               init_fn=lambda: jnp.zeros((), jnp.float32),
               reduce_fn=lambda _, new: new)


def _report_unused(rules, used, seen, on_unused):
  unused = [r for r in rules if id(r) not in used]
  if not unused or on_unused == "ignore":
    return
  shown = ", ".join(seen[:8]) + (" ..." if len(seen) > 8 else "")
  message = (f"{len(unused)} activation sparsity rule(s) matched no dense "
             f"layer: {[r.path for r in unused]}. Rules fullmatch layer "
             f"paths (no '/kernel'); the layers called were: "
             f"{shown or 'none'}.")
  if on_unused == "error":
    raise ValueError(message)
  warnings.warn(message, UserWarning, stacklevel=4)


@contextlib.contextmanager
def _sparsified_inputs(rules, grad, on_unused, model=None
                       ) -> Iterator[dict[str, jax.Array]]:
  """The context in which the rules' layers see sparsified inputs.

  Yields the `{path: fraction of zeros}` it fills as the layers run.
  """
  used, seen, recorded = set(), [], {}

  def handle(call: intercept.DenseCall, proceed):
    if call.path is None:
      return proceed()
    if call.path not in seen:
      seen.append(call.path)
    rule = next((r for r in rules if _matches(r, call.path)), None)
    if rule is None:
      return proceed()
    used.add(id(rule))
    if rule.pattern is None:
      return proceed()
    x = activations.sparsify_input(call.inputs, rule.pattern, call.path,
                                   grad=grad)
    recorded[call.path] = activations.zero_fraction(x)
    _sow_linen(call, recorded[call.path])
    return proceed(x)

  with intercept.intercept_dense(handle, model):
    yield recorded
  _report_unused(rules, used, seen, on_unused)


# ---------------------------------------------------------------- Linen ---


def _linen_subclass(cls, rules, grad, on_unused):

  class ActivationSparseLinen(cls):  # pylint: disable=missing-class-docstring

    def __call__(self, *args, **kwargs):
      if self.is_initializing():  # layers create their params: none to see
        return super().__call__(*args, **kwargs)
      with _sparsified_inputs(rules, grad, on_unused):
        return super().__call__(*args, **kwargs)

  name = f"ActivationSparse{cls.__name__}"
  ActivationSparseLinen.__name__ = ActivationSparseLinen.__qualname__ = name
  return ActivationSparseLinen


_cached_subclass = functools.lru_cache(maxsize=None)(_linen_subclass)


def _sparsify_linen(model, rules, grad, on_unused):
  cls = model if isinstance(model, type) else type(model)
  try:
    sub = _cached_subclass(cls, rules, grad, on_unused)
  except TypeError:  # unhashable patterns: no caching
    sub = _linen_subclass(cls, rules, grad, on_unused)
  if isinstance(model, type):
    return sub
  if model.scope is not None:
    raise ValueError("sparsify_activations takes a top-level (unbound) Linen "
                     "module, not a bound submodule.")
  attrs = {f.name: getattr(model, f.name) for f in dataclasses.fields(model)
           if f.init and f.name != "parent"}
  return sub(**attrs)


# ------------------------------------------------------------------ NNX ---


class AchievedSparsity(nnx.Variable):
  """`{layer path: fraction of zeros}` of an `ActivationSparse`'s last call."""


class ActivationSparse(nnx.Module):
  """An NNX model whose rule-matched dense layers see sparsified inputs.

  Build it with `sparsify_activations(model, rules)`; call it like the
  model. The wrapped model (`.model`) is the same object and runs dense when
  called directly. Layer paths are those inside the model (inside
  `sparse.model` when the model is a weight-sparsity `Sparse` wrapper).

  Attributes:
    model: the wrapped model.
    achieved: an `AchievedSparsity` variable, refreshed by every call.
  """

  def __init__(self, model: nnx.Module, rules: tuple, grad: str,
               on_unused: str):
    self.model = model
    self.rules = rules
    self.grad = grad
    self.on_unused = on_unused
    self.achieved = AchievedSparsity({})

  def __call__(self, *args, **kwargs):
    """Runs the model with the rules' layers on sparsified inputs."""
    named = self.model
    if isinstance(named, adapter.Sparse):
      named = named.model
    with _sparsified_inputs(self.rules, self.grad, self.on_unused,
                            named) as recorded:
      out = self.model(*args, **kwargs)
    self.achieved.set_value(dict(recorded))
    return out


# ---------------------------------------------------------------- entry ---


def sparsify_activations(model: Any, rules: Any, *, grad: str = "ste",
                         on_unused: str = "error") -> Any:
  """Sparsifies the inputs of the dense layers that `rules` name.

  Args:
    model: a Linen module (an unbound instance or a class) or an NNX module;
      either may already be sparsified with `sparsify` (weight sparsity).
    rules: `Rule`s whose regexes fullmatch layer paths (`block_0/mlp/fc2`,
      `layers/0`), with `NM(n, m)` or `Unstructured(sparsity)` patterns (or
      None: dense); one `Rule` or a list.
    grad: `"ste"` (straight-through, Q-Sparse) or `"masked"`.
    on_unused: a rule matching no dense layer: `"error"`, `"warn"` or
      `"ignore"` (reported when the model returns).

  Returns:
    Linen: a module (or class) with the same params, applied as before.
    NNX: an `ActivationSparse` wrapper module.

  Raises:
    ParamTypeError: a `model` that is no Flax module, or rules that are no
      `Rule`s. `ValueError`: a bad `grad` or `on_unused`; when the model runs,
      a pattern that does not fit a layer's input (naming the layer) or an
      unused rule.

  NNX, with the achieved sparsity read back:

  >>> import sparsejax as sj
  >>> model = nnx.Sequential(nnx.Linear(8, 4, rngs=nnx.Rngs(0)))
  >>> sparse = sparsify_activations(model,
  ...                               sj.Rule("layers/0", sj.Unstructured(0.75)))
  >>> y = sparse(jnp.arange(1.0, 17.0).reshape(2, 8))
  >>> {path: float(v) for path, v in achieved_sparsity(sparse).items()}
  {'layers/0': 0.75}
  """
  rules = rules_lib.as_rules(rules, "rules")
  for rule in rules:
    if rule.pattern is not None:
      activations.check_input_pattern(rule.pattern, path=rule.path)
  _checks.check_choice(grad, "grad", activations.GRADS)
  _checks.check_choice(on_unused, "on_unused", ("error", "warn", "ignore"))
  if isinstance(model, ActivationSparse):
    raise ValueError("this model already has activation sparsity; give all "
                     "rules in one sparsify_activations call.")
  if isinstance(model, nnx.Module):
    return ActivationSparse(model, rules, grad, on_unused)
  if isinstance(model, nn.Module) or (isinstance(model, type)
                                      and issubclass(model, nn.Module)):
    return _sparsify_linen(model, rules, grad, on_unused)
  raise _checks.ParamTypeError(
      f"model must be a Flax Linen or NNX module; got {type(model).__name__}.")


def achieved_sparsity(source: Any) -> dict[str, jax.Array]:
  """`{layer path: fraction of zeros in its sparsified input}`.

  Args:
    source: an NNX `ActivationSparse` model (its last call), or the
      variables Linen `apply(..., mutable=[ACTIVATION_SPARSITY])` returned
      (the whole dict or its `ACTIVATION_SPARSITY` entry).

  Returns:
    float32 scalars by layer path (each layer's last call); traceable.

  Raises:
    ParamTypeError: an NNX model without activation sparsity.

  >>> stats = {"fc": {"sparsity": jnp.float32(0.5)}}
  >>> achieved_sparsity({ACTIVATION_SPARSITY: stats})
  {'fc': Array(0.5, dtype=float32)}
  """
  if isinstance(source, ActivationSparse):
    return dict(source.achieved.get_value())
  if isinstance(source, nnx.Module):
    raise _checks.ParamTypeError(
        f"source: an NNX {type(source).__name__} records no activation "
        "sparsity; pass the wrapper sparsify_activations returned.")
  tree = source
  if isinstance(source, dict) and ACTIVATION_SPARSITY in source:
    tree = source[ACTIVATION_SPARSITY]
  out = {}
  for path, value in rules_lib.named_leaves(tree):
    layer, _, name = path.rpartition("/")
    if name == "sparsity":
      out[layer] = jnp.asarray(value, jnp.float32)
  return out
