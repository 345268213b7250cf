"""Bit-packed mask storage: 8 mask entries per byte along the last axis.

Packing along the last axis, not as one flat bit stream, keeps a packed mask on
the devices of its param: a param sharded on any axis gets a packed mask
sharded the same way (on the last axis, in bytes, when each shard holds a
multiple of 8 entries), so packing and unpacking need no collectives.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax import _checks
from sparsejax import masks as masks_lib
from sparsejax import rules as rules_lib

_SHIFTS = np.arange(7, -1, -1, dtype=np.uint8)


@dataclasses.dataclass(frozen=True)
class PackedMask:
  """A bool mask packed along its last axis.

  Attributes:
    bits: uint8 array of shape `(..., ceil(length / 8))`.
    length: the unpacked length of the last axis (static).
  """

  bits: jax.Array
  length: int


jax.tree_util.register_dataclass(
    PackedMask, data_fields=["bits"], meta_fields=["length"])


def pack(mask: jax.Array, path: str = "") -> "PackedMask":
  """Packs one bool mask along its last axis.

  Args:
    mask: a bool array with at least one axis.
    path: the leaf's path, for error messages.

  >>> packed = pack(jnp.array([[True, False, True]]))
  >>> packed.bits, packed.length
  (Array([[160]], dtype=uint8), 3)
  >>> pack(jnp.ones((2, 8), jnp.int32), "fc/kernel")
  Traceback (most recent call last):
  ...
  sparsejax._checks.ParamTypeError: mask at 'fc/kernel' must be bool to pack; got int32 (convert it with mask.astype(bool)).
  """
  dtype = jnp.result_type(mask)
  if dtype != jnp.bool_:
    raise _checks.ParamTypeError(
        f"mask{_checks.where(path)} must be bool to pack; got {dtype} "
        "(convert it with mask.astype(bool)).")
  if jnp.ndim(mask) < 1:
    raise ValueError(f"mask{_checks.where(path)} is a scalar; packing needs "
                     "at least one axis (a scalar mask is the dense marker, "
                     "kept as it is).")
  mask = jnp.asarray(mask)
  length = mask.shape[-1]
  pad = (-length) % 8
  if pad:
    mask = jnp.pad(mask, [(0, 0)] * (mask.ndim - 1) + [(0, pad)])
  groups = mask.reshape(*mask.shape[:-1], -1, 8).astype(jnp.uint8)
  bits = jnp.sum(groups << _SHIFTS, axis=-1, dtype=jnp.uint8)
  return PackedMask(bits, length)


def unpack(packed: "PackedMask", path: str = "") -> jax.Array:
  """Inverse of `pack`.

  Args:
    packed: a `PackedMask`.
    path: the leaf's path, for error messages.

  >>> unpack(pack(jnp.array([True, False, True]))).astype(int)
  Array([1, 0, 1], dtype=int32)
  """
  if not isinstance(packed, PackedMask):
    raise _checks.ParamTypeError(
        f"packed{_checks.where(path)} must be a PackedMask; got "
        f"{type(packed).__name__}.")
  bits, length = packed.bits, packed.length
  dtype = jnp.result_type(bits)
  if dtype != jnp.uint8:
    raise _checks.ParamTypeError(
        f"PackedMask.bits{_checks.where(path)} must be uint8; got {dtype}.")
  _checks.check_int(length, f"PackedMask.length{_checks.where(path)}", 0)
  if jnp.ndim(bits) < 1 or bits.shape[-1] != -(-length // 8):
    raise ValueError(
        f"PackedMask{_checks.where(path)}: length {length} needs "
        f"{-(-length // 8)} bytes on the last axis; bits have shape "
        f"{tuple(jnp.shape(bits))}.")
  bits = (bits[..., None] >> _SHIFTS) & jnp.uint8(1)
  flat = bits.reshape(*packed.bits.shape[:-1], -1)
  return flat[..., :length].astype(bool)


def pack_masks(masks: Any) -> Any:
  """Packs every mask leaf of a mask tree; dense markers stay as they are.

  Raises:
    ParamTypeError: naming the leaf, for a mask that is not bool.

  >>> tree = pack_masks({"w": jnp.ones((4, 16), bool), "b": masks_lib.dense_mask()})
  >>> tree["w"].bits.shape, tree["b"]
  ((4, 2), Array(True, dtype=bool))
  """
  return jax.tree_util.tree_map_with_path(
      lambda k, m: m if masks_lib.is_dense(m) else pack(
          m, rules_lib.path_str(k)), masks)


def unpack_masks(packed: Any) -> Any:
  """Inverse of `pack_masks`.

  >>> m = {"w": jnp.eye(3, dtype=bool)}
  >>> bool((unpack_masks(pack_masks(m))["w"] == m["w"]).all())
  True
  """
  return jax.tree_util.tree_map_with_path(
      lambda k, p: unpack(p, rules_lib.path_str(k))
      if isinstance(p, PackedMask) else p, packed,
      is_leaf=lambda x: isinstance(x, PackedMask))
