"""Block-sparse formats: BSR/BSC and a padded fixed-width variant.

A matrix of shape ``(R, C)`` is cut into ``(bh, bw)`` blocks, giving a block
grid ``(R / bh, C / bw)``. ``major="row"`` groups the kept blocks by block row
(BSR: the ``indices`` are block-column ids); ``major="col"`` groups them by
block column (BSC: the ``indices`` are block-row ids). Blocks are always stored
as they appear in the matrix (never transposed).

* :class:`BSR` -- ``values (nnz, bh, bw)``, ``indices (nnz,)`` and
  ``indptr (num_major + 1,)``. ``nnz`` may exceed the number of kept blocks
  (trailing zero padding) so that compression can run under ``jit``.
* :class:`PaddedBlockSparse` -- every major line padded to ``width`` blocks:
  ``values (num_major, width, bh, bw)``, ``indices (num_major, width)`` and
  ``counts (num_major,)``. Padding slots repeat the line's last valid index (0
  for an empty line) and hold zero values, so a kernel whose ``index_map``
  reads them fetches nothing new. Static grids use this variant.

Index arrays are int32 (they live in scalar memory on TPU).
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels.formats._shape import dense_matching

__all__ = ["BSR", "PaddedBlockSparse", "compress_bsr", "compress_padded_block",
           "decompress_block", "bsr_to_padded", "padded_to_bsr",
           "block_values_like"]

_MAJORS = ("row", "col")


def _static(**kw):
  return dataclasses.field(metadata=dict(static=True), **kw)


class _BlockGrid:
  """The block grid of a block-sparse matrix (shared by both formats)."""

  @property
  def grid(self) -> tuple[int, int]:
    return (self.shape[0] // self.block_shape[0],
            self.shape[1] // self.block_shape[1])


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BSR(_BlockGrid):
  """Compressed block-sparse matrix (BSR for ``major="row"``, else BSC).

  Attributes:
    values: ``(nnz, bh, bw)`` kept blocks, ordered by major line.
    indices: ``(nnz,)`` int32 minor block index of every kept block.
    indptr: ``(num_major + 1,)`` int32 line offsets into ``values``.
    shape: dense shape ``(R, C)`` (static).
    block_shape: ``(bh, bw)`` (static).
    major: ``"row"`` or ``"col"`` (static).
  """
  values: jax.Array
  indices: jax.Array
  indptr: jax.Array
  shape: tuple[int, int] = _static()
  block_shape: tuple[int, int] = _static()
  major: str = _static(default="row")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PaddedBlockSparse(_BlockGrid):
  """Block-sparse matrix with every major line padded to ``width`` blocks.

  Attributes:
    values: ``(num_major, width, bh, bw)`` blocks; padding blocks are zero.
    indices: ``(num_major, width)`` int32 minor block indices.
    counts: ``(num_major,)`` int32 number of valid blocks per line.
    shape: dense shape ``(R, C)`` (static).
    block_shape: ``(bh, bw)`` (static).
    major: ``"row"`` or ``"col"`` (static).
  """
  values: jax.Array
  indices: jax.Array
  counts: jax.Array
  shape: tuple[int, int] = _static()
  block_shape: tuple[int, int] = _static()
  major: str = _static(default="row")

  @property
  def width(self) -> int:
    return self.values.shape[1]


def _check(w, block_mask, block_shape, major):
  w = jnp.asarray(w)
  if w.ndim != 2:
    raise ValueError(f"w must be 2-D, got shape {w.shape}.")
  if major not in _MAJORS:
    raise ValueError(f"major must be one of {_MAJORS}, got {major!r}.")
  if len(block_shape) != 2 or any(int(b) < 1 for b in block_shape):
    raise ValueError(f"block_shape must be two positive ints, got "
                     f"{block_shape!r}.")
  bh, bw = (int(b) for b in block_shape)
  if w.shape[0] % bh or w.shape[1] % bw:
    raise ValueError(f"block_shape {(bh, bw)} must divide w shape {w.shape}.")
  grid = (w.shape[0] // bh, w.shape[1] // bw)
  block_mask = jnp.asarray(block_mask)
  if block_mask.shape != grid:
    raise ValueError(f"block_mask shape {block_mask.shape} must be the block "
                     f"grid {grid} of w {w.shape} with blocks {(bh, bw)}.")
  return w, block_mask.astype(bool), (bh, bw), grid


def _major_blocks(w, block_mask, bh, bw, grid, major):
  """Returns blocks ``(num_major, num_minor, bh, bw)`` and the major mask."""
  blocks = w.reshape(grid[0], bh, grid[1], bw).transpose(0, 2, 1, 3)
  if major == "col":
    return blocks.transpose(1, 0, 2, 3), block_mask.T
  return blocks, block_mask


def _is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def compress_padded_block(w, block_mask, block_shape, *, major: str = "row",
                          width: int | None = None) -> PaddedBlockSparse:
  """Compresses ``w`` to the padded fixed-width block format.

  Args:
    w: dense ``(R, C)`` matrix.
    block_mask: boolean ``(R // bh, C // bw)``; True keeps a block.
    block_shape: ``(bh, bw)``, dividing ``w.shape``.
    major: ``"row"`` groups blocks by block row, ``"col"`` by block column.
    width: blocks per line. Defaults to the largest line count, which needs
      a concrete mask; pass it explicitly under ``jit``. Lines with more kept
      blocks than ``width`` raise on the host (and are truncated under jit).

  Returns:
    A :class:`PaddedBlockSparse` whose ``decompress_block`` is ``w`` masked.

  >>> w = jnp.arange(16.0).reshape(4, 4)
  >>> bm = jnp.array([[True, False], [False, False]])
  >>> p = compress_padded_block(w, bm, (2, 2))
  >>> p.values.shape, p.counts
  ((2, 1, 2, 2), Array([1, 0], dtype=int32))
  >>> decompress_block(p)[:2]
  Array([[0., 1., 0., 0.],
         [4., 5., 0., 0.]], dtype=float32)
  """
  w, block_mask, (bh, bw), grid = _check(w, block_mask, block_shape, major)
  most = None
  if _is_concrete(block_mask):
    host = np.asarray(block_mask)
    most = int(np.max(host.sum(axis=1 if major == "row" else 0), initial=0))
  if width is None:
    if most is None:
      raise ValueError("width must be given when block_mask is traced "
                       "(the padded width is data dependent).")
    width = max(1, most)
  width = int(width)
  if width < 1:
    raise ValueError(f"width must be >= 1, got {width}.")
  if most is not None and most > width:
    raise ValueError(f"width={width} is smaller than the largest number of "
                     f"kept blocks in a {major} ({most}).")
  return _compress_padded(w, block_mask, block_shape=(bh, bw), major=major,
                          width=width)


@functools.partial(jax.jit, static_argnames=("block_shape", "major", "width"))
def _compress_padded(w, block_mask, *, block_shape, major, width):
  bh, bw = block_shape
  grid = block_mask.shape
  blocks, mk = _major_blocks(w, block_mask, bh, bw, grid, major)
  counts = mk.sum(axis=1, dtype=jnp.int32)
  num_minor = mk.shape[1]
  order = jnp.argsort(~mk, axis=1, stable=True).astype(jnp.int32)
  if width > num_minor:
    order = jnp.pad(order, ((0, 0), (0, width - num_minor)))
  order = order[:, :width]
  counts = jnp.minimum(counts, width)
  slot = jnp.arange(width, dtype=jnp.int32)[None, :]
  valid = slot < counts[:, None]
  last = jnp.take_along_axis(order, jnp.maximum(counts - 1, 0)[:, None], axis=1)
  last = jnp.where(counts[:, None] > 0, last, 0)
  indices = jnp.where(valid, order, last)
  vals = jnp.take_along_axis(blocks, indices[:, :, None, None], axis=1)
  vals = jnp.where(valid[:, :, None, None], vals, jnp.zeros((), w.dtype))
  return PaddedBlockSparse(values=vals, indices=indices, counts=counts,
                           shape=tuple(w.shape), block_shape=(bh, bw),
                           major=major)


def padded_to_bsr(p: PaddedBlockSparse, nnz: int | None = None) -> BSR:
  """Converts the padded variant to :class:`BSR` (``nnz`` needed under jit).

  >>> w = jnp.eye(4)
  >>> bm = jnp.array([[True, False], [False, True]])
  >>> b = padded_to_bsr(compress_padded_block(w, bm, (2, 2)))
  >>> b.indices, b.indptr
  (Array([0, 1], dtype=int32), Array([0, 1, 2], dtype=int32))
  """
  if nnz is None:
    if not _is_concrete(p.counts):
      raise ValueError("nnz must be given when the counts are traced.")
    nnz = int(np.asarray(p.counts).sum())
  return _padded_to_bsr(p, nnz=int(nnz))


@functools.partial(jax.jit, static_argnames=("nnz",))
def _padded_to_bsr(p, *, nnz):
  num_major, width = p.indices.shape
  valid = (jnp.arange(width, dtype=jnp.int32)[None, :] < p.counts[:, None])
  (flat,) = jnp.nonzero(valid.reshape(-1), size=nnz, fill_value=-1)
  ok = flat >= 0
  safe = jnp.where(ok, flat, 0)
  bh, bw = p.block_shape
  vals = p.values.reshape(num_major * width, bh, bw)[safe]
  vals = jnp.where(ok[:, None, None], vals, jnp.zeros((), vals.dtype))
  idx = jnp.where(ok, p.indices.reshape(-1)[safe], 0).astype(jnp.int32)
  indptr = jnp.concatenate([jnp.zeros((1,), jnp.int32),
                            jnp.cumsum(p.counts, dtype=jnp.int32)])
  return BSR(values=vals, indices=idx, indptr=indptr, shape=p.shape,
             block_shape=p.block_shape, major=p.major)


def compress_bsr(w, block_mask, block_shape, *, major: str = "row",
                 nnz: int | None = None) -> BSR:
  """Compresses ``w`` to :class:`BSR` (``major="col"`` gives BSC).

  Args:
    w: dense ``(R, C)`` matrix.
    block_mask: boolean block grid; True keeps a block.
    block_shape: ``(bh, bw)``, dividing ``w.shape``.
    major: ``"row"`` or ``"col"``.
    nnz: number of stored blocks; defaults to the kept count (needs a
      concrete mask). A larger value pads with zero blocks (jit friendly).

  >>> w = jnp.arange(16.0).reshape(4, 4)
  >>> b = compress_bsr(w, jnp.array([[False, True], [True, True]]), (2, 2))
  >>> b.indices, b.indptr
  (Array([1, 0, 1], dtype=int32), Array([0, 1, 3], dtype=int32))
  >>> bool((decompress_block(b) == w.at[:2, :2].set(0)).all())
  True
  """
  w, block_mask, (bh, bw), grid = _check(w, block_mask, block_shape, major)
  num_minor = grid[1] if major == "row" else grid[0]
  if nnz is None and not _is_concrete(block_mask):
    raise ValueError("nnz must be given when block_mask is traced.")
  if nnz is not None and _is_concrete(block_mask):
    kept = int(np.asarray(block_mask).sum())
    if nnz < kept:
      raise ValueError(f"nnz={nnz} is smaller than the number of kept "
                       f"blocks ({kept}).")
  p = compress_padded_block(w, block_mask, (bh, bw), major=major,
                            width=num_minor)
  return padded_to_bsr(p, nnz)


def bsr_to_padded(b: BSR, width: int | None = None) -> PaddedBlockSparse:
  """Converts :class:`BSR` to the padded variant (``width`` needed under jit).

  >>> w = jnp.eye(4)
  >>> b = compress_bsr(w, jnp.eye(2, dtype=bool), (2, 2), major="col")
  >>> bsr_to_padded(b).indices
  Array([[0],
         [1]], dtype=int32)
  """
  counts = jnp.diff(b.indptr).astype(jnp.int32)
  if width is None:
    if not _is_concrete(b.indptr):
      raise ValueError("width must be given when indptr is traced.")
    width = max(1, int(np.max(np.asarray(counts), initial=0)))
  return _bsr_to_padded(b, width=int(width))


@functools.partial(jax.jit, static_argnames=("width",))
def _bsr_to_padded(b, *, width):
  num_major = b.indptr.shape[0] - 1
  counts = jnp.diff(b.indptr).astype(jnp.int32)
  nnz = b.values.shape[0]
  k = jnp.arange(nnz, dtype=jnp.int32)
  line = jnp.searchsorted(b.indptr, k, side="right").astype(jnp.int32) - 1
  live = k < b.indptr[-1]
  line = jnp.clip(line, 0, num_major - 1)
  slot = k - b.indptr[line]
  keep = live & (slot < width)
  line = jnp.where(keep, line, num_major)  # out of range: dropped
  slot = jnp.where(keep, slot, 0)
  bh, bw = b.block_shape
  vals = jnp.zeros((num_major, width, bh, bw), b.values.dtype)
  vals = vals.at[line, slot].set(b.values, mode="drop")
  idx = jnp.zeros((num_major, width), jnp.int32)
  idx = idx.at[line, slot].set(b.indices, mode="drop")
  counts = jnp.minimum(counts, width)
  s = jnp.arange(width, dtype=jnp.int32)[None, :]
  last = jnp.take_along_axis(idx, jnp.maximum(counts - 1, 0)[:, None], axis=1)
  idx = jnp.where(s < counts[:, None], idx, jnp.where(counts[:, None] > 0,
                                                        last, 0))
  return PaddedBlockSparse(values=vals, indices=idx, counts=counts,
                           shape=b.shape, block_shape=b.block_shape,
                           major=b.major)


def decompress_block(b: BSR | PaddedBlockSparse) -> jax.Array:
  """Expands a block-sparse matrix to dense (zeros outside kept blocks).

  >>> w = jnp.ones((4, 6))
  >>> bm = jnp.array([[True, False, True], [False, False, False]])
  >>> decompress_block(compress_bsr(w, bm, (2, 2))).sum()
  Array(8., dtype=float32)
  """
  if not isinstance(b, (BSR, PaddedBlockSparse)):
    raise TypeError(f"expected BSR or PaddedBlockSparse, got {type(b)}.")
  return _decompress_block(b)


@jax.jit
def _decompress_block(b):
  bh, bw = b.block_shape
  grid = b.grid
  nmaj, nmin = grid if b.major == "row" else grid[::-1]
  if isinstance(b, PaddedBlockSparse):
    width = b.indices.shape[1]
    valid = jnp.arange(width)[None, :] < b.counts[:, None]
    vals = jnp.where(valid[:, :, None, None], b.values,
                     jnp.zeros((), b.values.dtype))
    line = jnp.broadcast_to(jnp.arange(nmaj)[:, None], (nmaj, width))
    vals, idx, line = vals.reshape(-1, bh, bw), b.indices.reshape(-1), \
        line.reshape(-1)
  elif isinstance(b, BSR):
    nnz = b.values.shape[0]
    k = jnp.arange(nnz)
    line = jnp.clip(jnp.searchsorted(b.indptr, k, side="right") - 1, 0,
                    nmaj - 1)
    live = k < b.indptr[-1]
    vals = jnp.where(live[:, None, None], b.values,
                     jnp.zeros((), b.values.dtype))
    idx = b.indices
  else:
    raise TypeError(f"expected BSR or PaddedBlockSparse, got {type(b)}.")
  dense = jnp.zeros((nmaj, nmin, bh, bw), b.values.dtype)
  dense = dense.at[line, idx].add(vals)
  if b.major == "col":
    dense = dense.transpose(1, 0, 2, 3)
  return dense.transpose(0, 2, 1, 3).reshape(b.shape)


def block_values_like(p: PaddedBlockSparse, dense) -> jax.Array:
  """Gathers the blocks of ``dense`` at the stored positions of ``p``.

  Padding slots get zeros. Used to map a dense gradient onto ``p.values``.

  >>> w = jnp.arange(16.0).reshape(4, 4)
  >>> p = compress_padded_block(w, jnp.array([[False, True], [False, False]]), (2, 2))
  >>> block_values_like(p, 2 * w)[0, 0]
  Array([[ 4.,  6.],
         [12., 14.]], dtype=float32)
  """
  return _block_values_like(p, dense_matching(dense, p))


@jax.jit
def _block_values_like(p, dense):
  bh, bw = p.block_shape
  blocks, _ = _major_blocks(dense, jnp.zeros(p.grid, bool), bh, bw, p.grid,
                            p.major)
  vals = jnp.take_along_axis(blocks, p.indices[:, :, None, None], axis=1)
  valid = jnp.arange(p.indices.shape[1])[None, :] < p.counts[:, None]
  return jnp.where(valid[:, :, None, None], vals, jnp.zeros((), vals.dtype))
