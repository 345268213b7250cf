"""optax integration: a sparsifier's state lives in the optimizer state.

`wrap(tx, sparsifier)` returns a `GradientTransformationExtraArgs` whose
state holds the inner optimizer's state and the `SparsityState`. The two-line
integration:

    tx = sj.wrap(optax.adamw(1e-3), sparsifier)
    loss = loss_fn(sparsifier.view(params, sj.sparsity_state(opt_state)), batch)

The wrapper runs last, after the inner optimizer (weight decay included), so
pruned weights of pruning methods stay exactly zero. When a method regrows
weights (RigL, SET), every state leaf of the inner optimizer shaped like the
corresponding param is reset at the regrown entries: found by path and shape,
so it works for any optax optimizer (adam, sgd with momentum, lion,
adafactor, `inject_hyperparams`, `chain`, `multi_transform`).
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sparsejax import _checks
from sparsejax import masks as masks_lib
from sparsejax import rules as rules_lib
from sparsejax.methods import registry
from sparsejax.methods.state import SparsityState


class WrappedState(NamedTuple):
  """State of `wrap`: the inner optimizer's state and the sparsity state."""

  inner: Any
  sparsity: SparsityState


def sparsity_state(opt_state: Any) -> SparsityState:
  """Finds the `SparsityState` inside an optimizer state (however nested).

  >>> import optax, sparsejax as sj
  >>> params = {"w": jnp.ones((4, 2))}
  >>> tx = optax.chain(optax.clip(1.0), sj.wrap(optax.sgd(0.1), sj.ste(sj.NM(2, 4))))
  >>> int(sparsity_state(tx.init(params)).step)
  0
  """
  found = [x for x in jax.tree.leaves(
      opt_state, is_leaf=lambda x: isinstance(x, SparsityState))
           if isinstance(x, SparsityState)]
  if len(found) != 1:
    raise ValueError(f"expected one SparsityState in the optimizer state; "
                     f"found {len(found)}. Build the optimizer with "
                     "sparsejax.wrap(tx, sparsifier).")
  return found[0]


def reset_where(opt_state: Any, params: Any, reset: Any) -> Any:
  """Zeroes optimizer-state entries of regrown weights, for any optimizer.

  A state leaf is reset where `reset` is True when its path ends with a
  param's path and it has that param's shape (adam's mu and nu, momentum
  traces, lion's mu, unfactored adafactor moments, inside any chain,
  `inject_hyperparams` or `multi_transform`). Step counts, scalars and
  factored moments of other shapes are left alone.

  >>> params = {"w": jnp.ones(3)}
  >>> state = optax.adam(0.1).init(params)
  >>> state = jax.tree.map(lambda x: x + 1, state)
  >>> new = reset_where(state, params, {"w": jnp.array([True, False, False])})
  >>> new[0].mu["w"]
  Array([0., 1., 1.], dtype=float32)
  """
  resets = {path: r for path, _, r in masks_lib.named_pairs(params, reset)
            if not masks_lib.is_dense(r)}
  if not resets:
    return opt_state
  shapes = {path: tuple(jnp.shape(w)) for path, w in rules_lib.named_leaves(
      params) if path in resets}

  def one(keypath, leaf):
    owner = rules_lib.param_of(rules_lib.path_str(keypath),
                               getattr(leaf, "shape", ()), shapes)
    if owner is None:
      return leaf
    return jnp.where(resets[owner], jnp.zeros_like(leaf), leaf)

  return jax.tree_util.tree_map_with_path(one, opt_state)


def _is_transformation(tx: Any) -> bool:
  return isinstance(tx, optax.GradientTransformation) or (
      not isinstance(tx, type) and callable(getattr(tx, "init", None))
      and callable(getattr(tx, "update", None)))


def check_transformation(tx: Any, name: str = "tx") -> Any:
  """Returns `tx`; a `ParamTypeError` naming `name` unless it is an optax
  `GradientTransformation`, saying how to make one of what was given.

  >>> check_transformation(optax.adam)
  Traceback (most recent call last):
  ...
  sparsejax._checks.ParamTypeError: tx must be an optax GradientTransformation; got the function optax.adam (a factory, not a transformation): call it, e.g. optax.adam(1e-3).
  """
  if _is_transformation(tx) and not registry.is_sparsifier(tx):
    return tx
  head = f"{name} must be an optax GradientTransformation; got "
  if registry.is_sparsifier(tx):
    raise _checks.ParamTypeError(
        head + "a sparsejax method: the order is wrap(tx, sparsifier), e.g. "
        "sj.wrap(optax.adam(1e-3), sj.ste(sj.NM(2, 4))).")
  if isinstance(tx, str):
    known = tx if callable(getattr(optax, tx, None)) else "adam"
    raise _checks.ParamTypeError(
        head + f"the string {tx!r}; pass the optimizer object, e.g. "
        f"optax.{known}(1e-3).")
  if callable(tx):
    fn = getattr(tx, "__name__", None)
    shown = (f"optax.{fn}" if fn and getattr(optax, fn, None) is tx else
             getattr(tx, "__qualname__", repr(tx)))
    example = f"{shown}(1e-3)" if shown.startswith("optax.") else (
        f"{shown}(...)")
    raise _checks.ParamTypeError(
        head + f"the function {shown} (a factory, not a transformation): "
        f"call it, e.g. {example}.")
  raise _checks.ParamTypeError(
      head + f"{tx!r} (a {type(tx).__name__}); e.g. optax.adam(1e-3).")


def wrap(tx: optax.GradientTransformation,
         sparsifier: Any) -> optax.GradientTransformationExtraArgs:
  """Composes an optax optimizer with a sparsifier.

  Args:
    tx: any optax `GradientTransformation`.
    sparsifier: any sparsejax sparsifier.

  Returns:
    A `GradientTransformationExtraArgs`; `update` needs `params`.

  Raises:
    ParamTypeError: (a `TypeError`) naming `tx` or `sparsifier` when either
      is not what it must be (a string, an uncalled factory, a pattern),
      saying how to build the right object.

  >>> import optax, sparsejax as sj
  >>> params = {"w": jnp.array([[1.], [-3.], [2.], [0.5]])}
  >>> sp = sj.ste(sj.NM(2, 4))
  >>> tx = sj.wrap(optax.sgd(0.1), sp)
  >>> opt_state = tx.init(params)
  >>> grads = jax.grad(lambda p: sp.view(p, opt_state.sparsity)["w"].sum())(params)
  >>> updates, opt_state = tx.update(grads, opt_state, params)
  >>> int(opt_state.sparsity.step)
  1
  """
  check_transformation(tx, "tx")
  registry.check_sparsifier(sparsifier, "sparsifier")
  tx = optax.with_extra_args_support(tx)

  def init(params):
    return WrappedState(tx.init(params), sparsifier.init(params))

  def update(grads, state, params=None, **extra_args):
    if params is None:
      raise ValueError("sparsejax.wrap needs params: call "
                       "tx.update(grads, opt_state, params).")
    updates, inner = tx.update(grads, state.inner, params, **extra_args)
    updates, sparsity = sparsifier.update(params, updates, state.sparsity,
                                          grads=grads)
    if sparsifier.hard:
      regrown = jax.tree.map(
          lambda old, new: new if masks_lib.is_dense(new) else new & ~old,
          state.sparsity.masks, sparsity.masks)
      inner = reset_where(inner, params, regrown)
    return updates, WrappedState(inner, sparsity)

  return optax.GradientTransformationExtraArgs(init, update)
