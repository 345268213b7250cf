"""Compressed sparse formats shared by export, checkpoints and kernels.

All formats are registered pytrees (arrays are leaves, shapes and patterns are
static metadata), so they pass through ``jit``, sharding and checkpointing.
Every conversion from the canonical form (dense weight + mask) is an exact
round trip: ``decompress(compress(w, mask)) == w * mask``.
"""
from pallas_kernels.formats._block import block_values_like
from pallas_kernels.formats._block import BSR
from pallas_kernels.formats._block import bsr_to_padded
from pallas_kernels.formats._block import compress_bsr
from pallas_kernels.formats._block import compress_padded_block
from pallas_kernels.formats._block import decompress_block
from pallas_kernels.formats._block import padded_to_bsr
from pallas_kernels.formats._block import PaddedBlockSparse
from pallas_kernels.formats._block_list import block_list_from_mask
from pallas_kernels.formats._block_list import BlockList
from pallas_kernels.formats._block_list import BlockOrder
from pallas_kernels.formats._block_list import decompress_block_list
from pallas_kernels.formats._block_list import to_block_list
from pallas_kernels.formats._nm import compress_nm
from pallas_kernels.formats._nm import decompress_nm
from pallas_kernels.formats._nm import default_tile_groups
from pallas_kernels.formats._nm import index_bits
from pallas_kernels.formats._nm import nm_values_like
from pallas_kernels.formats._nm import NMCompressed
from pallas_kernels.formats._nm import unpack_positions
from pallas_kernels.formats._nm import validate_nm_mask


def decompress(c):
  """Expands any compressed format to its dense (masked) matrix.

  >>> import jax.numpy as jnp
  >>> w = jnp.ones((4, 2)); mask = jnp.array([[1, 0], [0, 1], [0, 0], [1, 1]], bool)
  >>> decompress(compress_nm(w, mask, 1, 2)).sum()
  Array(4., dtype=float32)
  """
  if isinstance(c, NMCompressed):
    return decompress_nm(c)
  if isinstance(c, (BSR, PaddedBlockSparse)):
    return decompress_block(c)
  raise TypeError(f"decompress expects NMCompressed, BSR or PaddedBlockSparse, "
                  f"got {type(c).__name__}.")


__all__ = [
    "BSR", "BlockList", "BlockOrder", "NMCompressed", "block_values_like", "PaddedBlockSparse", "bsr_to_padded",
    "compress_bsr", "compress_nm", "compress_padded_block", "decompress",
    "block_list_from_mask", "decompress_block", "decompress_block_list",
    "decompress_nm", "to_block_list", "default_tile_groups", "index_bits",
    "nm_values_like", "padded_to_bsr", "unpack_positions", "validate_nm_mask",
]
