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

from sparsejax import masks as masks_lib

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


def pack(mask: jax.Array) -> "PackedMask":
  """Packs one bool mask along its last axis.

  >>> packed = pack(jnp.array([[True, False, True]]))
  >>> packed.bits, packed.length
  (Array([[160]], dtype=uint8), 3)
  """
  if jnp.result_type(mask) != jnp.bool_:
    raise TypeError(f"pack needs a bool mask; got {jnp.result_type(mask)}.")
  length = mask.shape[-1]
  pad = (-length) % 8
  if pad:
    mask = jnp.pad(mask, [(0, 0)] * (mask.ndim - 1) + [(0, pad)])
  groups = mask.reshape(*mask.shape[:-1], -1, 8).astype(jnp.uint8)
  bits = jnp.sum(groups << _SHIFTS, axis=-1, dtype=jnp.uint8)
  return PackedMask(bits, length)


def unpack(packed: "PackedMask") -> jax.Array:
  """Inverse of `pack`.

  >>> unpack(pack(jnp.array([True, False, True]))).astype(int)
  Array([1, 0, 1], dtype=int32)
  """
  bits = (packed.bits[..., None] >> _SHIFTS) & jnp.uint8(1)
  flat = bits.reshape(*packed.bits.shape[:-1], -1)
  return flat[..., :packed.length].astype(bool)


def pack_masks(masks: Any) -> Any:
  """Packs every mask leaf of a mask tree; dense markers stay as they are.

  >>> tree = pack_masks({"w": jnp.ones((4, 16), bool), "b": masks_lib.dense_mask()})
  >>> tree["w"].bits.shape, tree["b"]
  ((4, 2), Array(True, dtype=bool))
  """
  return jax.tree.map(lambda m: m if masks_lib.is_dense(m) else pack(m), masks)


def unpack_masks(packed: Any) -> Any:
  """Inverse of `pack_masks`.

  >>> m = {"w": jnp.eye(3, dtype=bool)}
  >>> bool((unpack_masks(pack_masks(m))["w"] == m["w"]).all())
  True
  """
  return jax.tree.map(
      lambda p: unpack(p) if isinstance(p, PackedMask) else p, packed,
      is_leaf=lambda x: isinstance(x, PackedMask))
