"""`sparsify(model, sparsifier)`: one entry point for Linen and NNX.

The forward pass of the sparsified model sees `sparsifier.view(params,
state)` (STE, SR-STE, ...) while its params keep their paths, so checkpoints
of the dense model load as they are. Only the sparsifier's public protocol is
used (`init`, `view`); the sparsity state is an opaque pytree.

**Linen.** `sparsify(module, sparsifier)` returns the module lifted with
`nn.map_variables`: `init` is unchanged, `apply` takes the state in a
`"sparsity"` collection (`state_collection(state)`) and views the params
before the module's own code runs (so `nn.scan` / `nn.remat` inside work).
Train with the state in the optimizer (`sparsejax.wrap`):

>>> import optax, sparsejax as sj
>>> sp = sj.ste(sj.NM(2, 4))
>>> model = nn.Dense(4)
>>> x, y = jnp.ones((8, 16)), jnp.zeros((8, 4))
>>> params = model.init(jax.random.key(0), x)["params"]
>>> sparse_model = sparsify(model, sp)
>>> tx = sj.wrap(optax.adam(1e-2), sp)
>>> opt_state = tx.init(params)
>>> @jax.jit
... def train_step(params, opt_state):
...   def loss_fn(params):
...     variables = {"params": params,
...                  **state_collection(sj.sparsity_state(opt_state))}
...     return jnp.mean((sparse_model.apply(variables, x) - y) ** 2)
...   grads = jax.grad(loss_fn)(params)
...   updates, opt_state = tx.update(grads, opt_state, params)
...   return optax.apply_updates(params, updates), opt_state
>>> for _ in range(3):
...   params, opt_state = train_step(params, opt_state)
>>> int(sj.sparsity_state(opt_state).step)
3

**NNX.** `sparsify(model, sparsifier, state=...)` returns a `Sparse` wrapper
module (the model is not modified and no class is swapped). Calling the
wrapper runs the model on the viewed params: it sets the params' values to
the view for the duration of the call and restores them after, so gradients
reach the dense params. The state is stored once:

* `state=optimizer` (an `nnx.Optimizer` built with `sparsejax.wrap`): the
  wrapper *shares* the optimizer's sparsity-state variables, so every
  `optimizer.update` refreshes what the wrapper sees. Nothing to sync.
* `state=None`: the wrapper holds its own state, from `sparsifier.init`
  (evaluation); or pass a state to hold.

Calling `model` itself still runs dense. Each `sparsify` call makes an
independent wrapper of the same model object; wrapping a wrapper is an
error. Nothing is added to the model, so `nnx.state(model)` (the checkpoint)
is exactly the dense model's; the optimizer's state is that of
`sparsejax.wrap`.

Train with an `nnx.Optimizer` on the model itself (its param paths are the
dense model's, so the sparsifier's rules and checkpoints are unchanged); the
gradients of the wrapper's model are `grads["model"]`:

>>> from flax import nnx
>>> model = nnx.Linear(16, 4, rngs=nnx.Rngs(0))
>>> optimizer = nnx.Optimizer(model, sj.wrap(optax.adam(1e-2), sp),
...                           wrt=nnx.Param)
>>> sparse = sparsify(model, sp, state=optimizer)
>>> @nnx.jit
... def train_step(sparse, optimizer):
...   loss_fn = lambda sparse: jnp.mean((sparse(x) - y) ** 2)
...   loss, grads = nnx.value_and_grad(loss_fn)(sparse)
...   optimizer.update(sparse.model, grads["model"])
...   return loss
>>> for _ in range(3):
...   loss = train_step(sparse, optimizer)
>>> int(sparse.state.step)     # the optimizer's state, seen by the wrapper
3
>>> kernel = sparse.sparse_params()["kernel"]   # exactly 2:4, for export
>>> bool(((kernel != 0).reshape(4, 4, 4).sum(axis=1) == 2).all())
True
"""

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
from flax import nnx

from sparsejax import _checks
from sparsejax import optax_wrap
from sparsejax import rules as rules_lib
from sparsejax.methods import registry

COLLECTION = "sparsity"


def state_collection(state: Any) -> dict:
  """The variables entry that carries a sparsity state into Linen `apply`.

  >>> sorted(state_collection("s"))
  ['sparsity']
  """
  return {COLLECTION: {"state": state}}


# ---------------------------------------------------------------- Linen ---


def _linen_view(sparsifier, variables):
  state = variables.get(COLLECTION, {}).get("state")
  if state is None or "params" not in variables:
    return variables  # init: the params are being created.
  return {**variables, "params": sparsifier.view(variables["params"], state)}


def _lift(cls, sparsifier):
  lifted = nn.map_variables(cls, ("params", COLLECTION),
                            trans_in_fn=functools.partial(_linen_view,
                                                          sparsifier),
                            init=True)

  class Sparse(lifted):  # pylint: disable=missing-class-docstring

    def __call__(self, *args, **kwargs):
      if not (self.is_initializing()
              or self.has_variable(COLLECTION, "state")):
        raise ValueError(
            f"the sparsified {cls.__name__} was applied without its sparsity "
            "state; pass {'params': params, "
            "**sparsejax.flax.state_collection(state)} (the state from "
            "sparsifier.init(params) or sparsejax.sparsity_state(opt_state)).")
      return super().__call__(*args, **kwargs)

  Sparse.__name__ = Sparse.__qualname__ = f"Sparse{cls.__name__}"
  return Sparse


@functools.lru_cache(maxsize=None)
def _lifted_class(cls, sparsifier):
  return _lift(cls, sparsifier)


def _linen_class(cls, sparsifier):
  try:
    return _lifted_class(cls, sparsifier)
  except TypeError:  # An unhashable sparsifier: lift without caching.
    return _lift(cls, sparsifier)


def _sparsify_linen(model, sparsifier):
  if isinstance(model, type):
    return _linen_class(model, sparsifier)
  if model.scope is not None:
    raise ValueError("sparsify a top-level (unbound) Linen module, e.g. "
                     "sparsify(Model(cfg), sparsifier), not a bound "
                     "submodule.")
  attrs = {f.name: getattr(model, f.name) for f in dataclasses.fields(model)
           if f.init and f.name != "parent"}
  return _linen_class(type(model), sparsifier)(**attrs)


# ------------------------------------------------------------------ NNX ---


class SparsityVariable(nnx.Variable):
  """One leaf of a sparsity state held by a `Sparse` wrapper."""


def _is_variable(x):
  return isinstance(x, nnx.Variable)


def _get(x):
  return x.get_value() if hasattr(x, "get_value") else x.value


def _values(tree):
  return jax.tree.map(lambda x: _get(x) if _is_variable(x) else x, tree,
                      is_leaf=_is_variable)


def _params(model):
  """The model's params as arrays, structured as `nnx.Optimizer` has them.

  The same structure as the params optax sees, so the masks of a state the
  optimizer holds line up with it.
  """
  params = nnx.state(model, nnx.Param)
  if hasattr(nnx, "as_pure"):
    return nnx.as_pure(params)
  return _values(params)


def _shared_optimizer_state(optimizer):
  state = optax_wrap.sparsity_state(optimizer.opt_state)
  leaves = jax.tree.leaves(state, is_leaf=_is_variable)
  if not all(_is_variable(x) for x in leaves):
    raise TypeError("the optimizer's sparsity state holds plain arrays, not "
                    "NNX variables; pass an nnx.Optimizer.")
  return state


class Sparse(nnx.Module):
  """An NNX model whose forward pass sees its params through a sparsifier.

  Build it with `sparsify(model, sparsifier, state=...)`.

  Attributes:
    model: the wrapped model (the same object; its params keep their paths).
    sparsifier: the sparsifier (static).
    sparsity: the sparsity state, a pytree of NNX variables (its own
      `SparsityVariable` objects, or the optimizer's, shared).
  """

  def __init__(self, model: nnx.Module, sparsifier: Any, sparsity: Any):
    self.model = model
    self.sparsifier = sparsifier
    self.sparsity = nnx.data(sparsity) if hasattr(nnx, "data") else sparsity

  @property
  def state(self) -> Any:
    """The current sparsity state (arrays), e.g. for `sparse_params`."""
    return _values(self.sparsity)

  def params(self) -> Any:
    """The model's dense params (arrays), as the sparsifier sees them."""
    return _params(self.model)

  def sparse_params(self) -> Any:
    """Exactly sparse params (`sparsifier.sparse_params`), for export."""
    return self.sparsifier.sparse_params(self.params(), self.state)

  def __call__(self, *args, **kwargs):
    """Runs the model with its params set to the sparsifier's view."""
    dense = _params(self.model)
    viewed = self.sparsifier.view(dense, self.state)
    nnx.update(self.model, viewed)
    try:
      return self.model(*args, **kwargs)
    finally:
      nnx.update(self.model, dense)


def _sparsify_nnx(model, sparsifier, state):
  if isinstance(model, Sparse):
    raise ValueError("this model is already sparsified (a Sparse wrapper); "
                     "sparsify the wrapped model (`sparse.model`) instead.")
  if isinstance(state, nnx.Optimizer):
    try:
      sparsity = _shared_optimizer_state(state)
    except ValueError as err:
      raise ValueError(f"state: the nnx.Optimizer holds no sparsity state "
                       f"({err}); build it with "
                       "nnx.Optimizer(model, sparsejax.wrap(tx, sparsifier), "
                       "wrt=nnx.Param).") from None
  else:
    if state is None:
      state = sparsifier.init(_params(model))
    bad = [path for path, leaf in rules_lib.named_leaves(state)
           if not hasattr(leaf, "shape")]
    if bad or not jax.tree.leaves(state):
      raise _checks.ParamTypeError(
          f"state must be None, an nnx.Optimizer built with sparsejax.wrap, "
          f"or a sparsity state (sparsifier.init(params)); got "
          f"{type(state).__name__}"
          + (f" with non-array leaves at {bad[:4]}." if bad else "."))
    sparsity = jax.tree.map(SparsityVariable, state)
  return Sparse(model, sparsifier, sparsity)


# ---------------------------------------------------------------- entry ---


def sparsify(model: Any, sparsifier: Any, *, state: Any = None) -> Any:
  """Makes a Linen or NNX model see its params through `sparsifier`.

  Args:
    model: a Linen module (an unbound instance, or a class) or an NNX
      module.
    sparsifier: any sparsejax sparsifier; its rules match the model's param
      paths (`fc1/kernel`, `layers/0/kernel`; no `params/` prefix).
    state: NNX only: None (the wrapper holds a fresh state from
      `sparsifier.init`), a sparsity state to hold, or an `nnx.Optimizer`
      built with `sparsejax.wrap` whose state the wrapper shares.

  Returns:
    Linen: the lifted module (or class); apply it with
    `{"params": params, **state_collection(state)}`. NNX: a `Sparse`
    wrapper module; call it like the model.

  Raises:
    ValueError: an NNX model that is already a `Sparse` wrapper; `state`
      given for a Linen module.
    ParamTypeError: (a `TypeError`) `model` that is no Flax module, or
      `sparsifier` that is no sparsejax method.

  Linen:

  >>> import flax.linen as nn, sparsejax as sj
  >>> sp = sj.ste(sj.NM(2, 4))
  >>> layer = nn.Dense(3)
  >>> params = layer.init(jax.random.key(0), jnp.ones((1, 8)))["params"]
  >>> state = sp.init(params)
  >>> y = sparsify(layer, sp).apply({"params": params,
  ...                                **state_collection(state)}, jnp.eye(8))
  >>> bool((y - params["bias"] == sp.view(params, state)["kernel"]).all())
  True

  NNX:

  >>> from flax import nnx
  >>> model = nnx.Linear(8, 3, rngs=nnx.Rngs(0))
  >>> sparse = sparsify(model, sp)
  >>> y = sparse(jnp.eye(8))
  >>> float((y - model.bias[...] != 0).mean())   # 2 of every 4 rows kept
  0.5
  >>> bool((model(jnp.eye(8)) - model.bias[...] == model.kernel[...]).all())
  True
  """
  registry.check_sparsifier(sparsifier, "sparsifier")
  if isinstance(model, nnx.Module):
    return _sparsify_nnx(model, sparsifier, state)
  if isinstance(model, nn.Module) or (isinstance(model, type)
                                      and issubclass(model, nn.Module)):
    if state is not None:
      raise ValueError("a Linen module takes its sparsity state at apply "
                       "time: {'params': params, **state_collection(state)}; "
                       "do not pass `state` to sparsify.")
    return _sparsify_linen(model, sparsifier)
  raise _checks.ParamTypeError(
      f"model must be a Flax Linen or NNX module (a Linen instance or "
      f"class, or an nnx.Module); got {type(model).__name__}.")
