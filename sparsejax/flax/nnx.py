"""NNX adapter: `Mask` variables and module surgery selected by rules.

`sparsify(model, sparsifier)` finds the params the sparsifier's rules target
(paths like `mlp/kernel`), adds a `Mask` variable beside each one
(`mlp/kernel_mask`) plus one shared `SparsityStep`, and swaps the class of
each owning module for a subclass whose `__call__` runs the original code on
the sparse view of its params. Param paths do not change, so checkpoints of
the dense model load as they are.

Training keeps the sparsifier state in the optimizer (`sparsejax.wrap`) and
copies the refreshed masks into the model after each update with `sync`:

    sp = sj.ste_nm(sj.NM(2, 4))
    sjnnx.sparsify(model, sp)
    optimizer = nnx.Optimizer(model, sj.wrap(optax.adam(1e-3), sp),
                              wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, batch):
      grads = nnx.grad(loss_fn)(model, batch)
      optimizer.update(model, grads)
      sjnnx.sync(model, optimizer)
"""

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from sparsejax import masks as masks_lib
from sparsejax import optax_wrap
from sparsejax import rules as rules_lib
from sparsejax.sparsifiers import base


class Mask(nnx.Variable):
  """A bool mask beside a param; never touched by `wrt=nnx.Param`."""


class SparsityScale(nnx.Variable):
  """A frozen per-tensor scale (S-STE) beside a param."""


class SparsityStep(nnx.Variable):
  """The sparsifier step the forward views use (shared by all modules)."""


def _value(x):
  return x[...] if isinstance(x, nnx.Variable) else x


@functools.lru_cache(maxsize=None)
def _sparse_class(cls):

  def __call__(self, *args, **kwargs):
    originals = {}
    for attr, pattern, path in self.sparse_targets:
      var = getattr(self, attr)
      w = var[...]
      scale = getattr(self, attr + "_scale", None)
      extra = () if scale is None else (scale[...],)
      originals[attr] = w
      var[...] = self.sparsifier.view_leaf(
          pattern, w, getattr(self, attr + "_mask")[...],
          self.sparsity_step[...], path, *extra)
    try:
      return cls.__call__(self, *args, **kwargs)
    finally:
      for attr, w in originals.items():
        getattr(self, attr)[...] = w

  return type(f"Sparse{cls.__name__}", (cls,), {"__call__": __call__,
                                               "__module__": cls.__module__})


def _params(model):
  return nnx.state(model, nnx.Param)


def _owner(model, path):
  """The module holding the param at `path`, and the param's attribute."""
  *owner_path, attr = path.split("/")
  owner = model
  for key in owner_path:
    owner = owner[int(key)] if key.isdigit() else getattr(owner, key)
  return owner, attr


def _sharding_metadata(param):
  """The param's metadata (logical sharding annotations included) for its mask.

  The mask value is computed from the already-placed param and has its
  sharding; the annotations make `nnx.get_partition_spec` agree.
  """
  meta = dict(param.get_metadata())
  if "eager_sharding" in meta:
    meta["eager_sharding"] = False
  return meta


def sparsify(model, sparsifier):
  """Module surgery in place; returns the initial `SparsityState`.

  Args:
    model: an NNX module; its targeted params' owners must be callable
      modules (Linear, Conv, Einsum, your own).
    sparsifier: any sparsejax sparsifier; its rules match param paths such
      as `block/mlp/kernel`.

  >>> import sparsejax as sj
  >>> model = nnx.Linear(8, 2, rngs=nnx.Rngs(0))
  >>> state = sparsify(model, sj.ste_nm(sj.NM(2, 4)))
  >>> type(model).__name__, model.kernel_mask[...].mean()
  ('SparseLinear', Array(0.5, dtype=float32))
  >>> bool((model(jnp.eye(8)) - model.bias[...] == model.kernel[...] * model.kernel_mask[...]).all())
  True
  """
  params = _params(model)
  state = sparsifier.init(params)
  plan = sparsifier.patterns(params)
  masks = dict(rules_lib.named_leaves(state.masks))
  scales = (dict(rules_lib.named_leaves(state.scales))
            if state.scales is not None else {})
  step = SparsityStep(jnp.zeros((), jnp.int32))
  owners = {}
  for path, pattern in plan.items():
    if pattern is None:
      continue
    owner, attr = _owner(model, path)
    setattr(owner, attr + "_mask", Mask(masks[path],
                                        **_sharding_metadata(getattr(owner,
                                                                     attr))))
    if path in scales:
      setattr(owner, attr + "_scale", SparsityScale(scales[path]))
    owners.setdefault(id(owner), (owner, []))[1].append((attr, pattern, path))
  for owner, targets in owners.values():
    if not callable(owner):
      raise TypeError(f"the owner of {targets[0][2]!r} is not a callable "
                      "module; target params of Linear/Conv-like modules.")
    owner.sparse_targets = tuple(targets)
    owner.sparsifier = sparsifier
    owner.sparsity_step = step
    owner.__class__ = _sparse_class(type(owner))
  return state


def sync(model, state_or_optimizer):
  """Copies the masks and step of a `SparsityState` into the model.

  Accepts the state itself or anything holding exactly one (an
  `nnx.Optimizer` built with `sparsejax.wrap`, an optax state).
  """
  holder = state_or_optimizer
  if isinstance(holder, nnx.Optimizer):
    holder = holder.opt_state
  state = holder if hasattr(holder, "masks") and hasattr(
      holder, "flips") else optax_wrap.sparsity_state(holder)
  masks = dict(rules_lib.named_leaves(jax.tree.map(
      _value, state.masks, is_leaf=lambda x: isinstance(x, nnx.Variable))))
  for path, module in nnx.iter_graph(model):
    del path
    if not isinstance(module, nnx.Module) or not hasattr(module,
                                                         "sparse_targets"):
      continue
    for attr, _, param_path in module.sparse_targets:
      mask = masks[param_path]
      if masks_lib.is_dense(mask):
        raise ValueError(f"the sparsity state has no mask for "
                         f"{param_path!r}; was it built from this model?")
      getattr(module, attr + "_mask")[...] = mask
    module.sparsity_step[...] = _value(state.step)


def model_state(model, sparsifier):
  """Rebuilds the `SparsityState` from the model's `Mask` variables.

  The flip counts are not kept in the model and come back as zeros.

  >>> import sparsejax as sj
  >>> model = nnx.Linear(8, 2, rngs=nnx.Rngs(0))
  >>> sp = sj.ste_nm(sj.NM(1, 4))
  >>> _ = sparsify(model, sp)
  >>> float(sp.sparse_params(nnx.state(model, nnx.Param), model_state(model, sp))["kernel"][...].astype(bool).mean())
  0.25
  """
  params = _params(model)
  plan = sparsifier.patterns(params)
  step = None

  def leaf(keypath, _, suffix):
    nonlocal step
    path = rules_lib.path_str(keypath)
    if plan[path] is None:
      return masks_lib.dense_mask()
    owner, attr = _owner(model, path)
    step = owner.sparsity_step[...]
    return getattr(owner, attr + suffix)[...]

  masks = jax.tree_util.tree_map_with_path(
      lambda kp, x: leaf(kp, x, "_mask"), params)
  scales = None
  if any(hasattr(_owner(model, p)[0], p.split("/")[-1] + "_scale")
         for p, pattern in plan.items() if pattern is not None):
    scales = jax.tree_util.tree_map_with_path(
        lambda kp, x: leaf(kp, x, "_scale"), params)
  if step is None:
    raise ValueError("the model has no sparsified params; call sparsify().")
  flips = jax.tree.map(lambda _: jnp.zeros((), jnp.int32), masks)
  return base.SparsityState(step=step, masks=masks, flips=flips,
                            scales=scales)
