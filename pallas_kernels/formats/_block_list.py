"""A flat, line-sorted list of nonzero blocks (after the splash-attention masks).

A matrix of shape ``(R, C)`` is cut into ``(bh, bw)`` blocks (block grid
``(R / bh, C / bw)``). :class:`BlockList` stores the kept blocks once, in
row-major order, in a fixed-capacity array ``values (capacity, bh, bw)``, and
two walks over them:

* ``by_row`` -- steps grouped by block row: drives ``A @ X`` (an output block
  row per line) and ``g @ W.T`` (the input gradient of ``x @ W``);
* ``by_col`` -- steps grouped by block column: drives ``x @ W`` and ``A.T @ g``
  (the input gradient of ``A @ X``). This is the transposed copy: metadata
  only, the values are shared.

A walk (:class:`BlockOrder`) has ``capacity + lines`` steps. Step ``s`` adds
block ``values[data[s]]`` into output line ``line[s]``, reading the dense
operand's block ``red[s]``. ``flags[s]`` has ``FIRST`` (zero the accumulator),
``LAST`` (write the line out) and ``VALID`` (the step has a block). An empty
line gets one step with ``FIRST | LAST`` and no ``VALID`` (it writes zeros);
trailing steps past the used ones have no flags. Steps without a block repeat
the block indices of the next step that has one (the previous one at the
end), as splash attention's ``data_next`` does, so a pipelined kernel issues
no DMA for them. The grid is therefore ``nnz + empty lines`` useful steps
plus at most ``capacity - nnz`` idle ones.

The metadata is built with ``jnp.nonzero(size=capacity)``, so it can be built
inside ``jit`` from a block mask that changes between calls without
recompiling. ``nnz`` records the kept-block count of the mask, which may exceed
the capacity; :func:`block_list_from_mask` raises on overflow (on the host for
a concrete mask, through ``jax.debug.callback`` under ``jit``).

The walks' index arrays are int32: they are the scalar-prefetch operands of
the TPU kernel (see :func:`smem_bytes`). The per-block ``rows``/``cols`` (read
by XLA gathers only) are int16 when the block grid allows it.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["BlockList", "BlockOrder", "block_list_from_mask",
           "to_block_list", "decompress_block_list", "check_block_list",
           "smem_bytes", "FIRST", "LAST", "VALID"]

FIRST = 1
LAST = 2
VALID = 4


def _static(**kw):
  return dataclasses.field(metadata=dict(static=True), **kw)


def _where(name):
  return f"layer {name!r}: " if name else ""


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BlockOrder:
  """One walk over the blocks of a :class:`BlockList`, grouped by line.

  Attributes:
    line: ``(steps,)`` output line (block row or block column) of each step.
    red: ``(steps,)`` block index of the dense operand read by each step.
    data: ``(steps,)`` index into ``BlockList.values``.
    flags: ``(steps,)`` ``FIRST | LAST | VALID`` bits.
    start: ``(lines,)`` first step of each line.
    count: ``(lines,)`` blocks in each line.
  """
  line: jax.Array
  red: jax.Array
  data: jax.Array
  flags: jax.Array
  start: jax.Array
  count: jax.Array

  @property
  def steps(self) -> int:
    return self.line.shape[0]

  @property
  def lines(self) -> int:
    return self.start.shape[0]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BlockList:
  """Kept blocks of an ``(R, C)`` matrix as a flat list (see module doc).

  Attributes:
    values: ``(capacity, bh, bw)`` kept blocks in row-major order; slots past
      the kept count are zero.
    rows: ``(capacity,)`` block row of each stored block (0 for empty
      slots); int16 when the block grid fits, else int32.
    cols: ``(capacity,)`` block column of each stored block (same dtype).
    nnz: ``()`` int32 number of kept blocks in the mask (``> capacity`` means
      overflow: only the first ``capacity`` in row-major order are stored).
    by_row: walk grouped by block row.
    by_col: walk grouped by block column (the transposed copy).
    shape: dense shape ``(R, C)`` (static).
    block_shape: ``(bh, bw)`` (static).
  """
  values: jax.Array
  rows: jax.Array
  cols: jax.Array
  nnz: jax.Array
  by_row: BlockOrder
  by_col: BlockOrder
  shape: tuple[int, int] = _static()
  block_shape: tuple[int, int] = _static()

  @property
  def grid(self) -> tuple[int, int]:
    return (self.shape[0] // self.block_shape[0],
            self.shape[1] // self.block_shape[1])

  @property
  def capacity(self) -> int:
    return self.rows.shape[0]

  @property
  def valid(self) -> jax.Array:
    """``(capacity,)`` bool: which slots hold a kept block."""
    return jnp.arange(self.capacity) < jnp.minimum(self.nnz, self.capacity)


def smem_bytes(order: BlockOrder) -> int:
  """Bytes of TPU scalar memory the TPU kernel prefetches for ``order``.

  Four int32 arrays of ``steps`` entries (``line``, ``red``, ``data``,
  ``flags``).

  >>> bl = block_list_from_mask(jnp.ones((4, 4)), jnp.eye(2, dtype=bool), (2, 2))
  >>> smem_bytes(bl.by_col)  # 2 blocks + 2 lines = 4 steps
  64
  """
  return 4 * 4 * order.steps


def _check_shapes(shape, block_shape, name):
  if len(shape) != 2:
    raise ValueError(f"{_where(name)}a block list needs a 2-D matrix, got "
                     f"shape {tuple(shape)}.")
  if len(block_shape) != 2 or any(int(b) < 1 for b in block_shape):
    raise ValueError(f"{_where(name)}block_shape must be two positive ints, "
                     f"got {block_shape!r}.")
  bh, bw = (int(b) for b in block_shape)
  if shape[0] % bh or shape[1] % bw:
    raise ValueError(f"{_where(name)}block_shape {(bh, bw)} must divide the "
                     f"matrix shape {tuple(shape)} (rule: each block dim "
                     "divides the matching matrix dim).")
  return bh, bw, (shape[0] // bh, shape[1] // bw)


def _overflow_check(nnz, capacity, name):
  def check(n):
    if int(n) > capacity:
      raise ValueError(f"{_where(name)}the block mask keeps {int(n)} blocks "
                       f"but the block list capacity is {capacity} "
                       "(rule: kept blocks <= capacity); blocks past the "
                       "capacity were dropped.")
  jax.debug.callback(check, nnz)


def block_list_from_mask(w, block_mask, block_shape, *,
                         capacity: int | None = None,
                         name: str | None = None,
                         check: bool = True) -> BlockList:
  """Builds a :class:`BlockList` from a dense matrix and a block mask.

  Works under ``jit``: with a fixed ``capacity`` a traced mask that changes
  between calls reuses the compiled program. Differentiable in ``w`` (the
  gradient is the masked dense gradient).

  Args:
    w: dense ``(R, C)`` matrix.
    block_mask: bool ``(R // bh, C // bw)``; True keeps a block.
    block_shape: ``(bh, bw)``, dividing ``w.shape``.
    capacity: stored-block slots (static). Defaults to the kept count, which
      needs a concrete mask.
    name: layer name used in error messages.
    check: raise when the mask keeps more than ``capacity`` blocks (on the
      host when the mask is concrete, else through ``jax.debug.callback`` at
      run time). With ``check=False`` the extra blocks are dropped and
      ``nnz > capacity`` records it.

  Returns:
    The block list; ``decompress_block_list`` of it is ``w`` masked.

  >>> w = jnp.arange(16.0).reshape(4, 4)
  >>> bl = block_list_from_mask(w, jnp.array([[True, True], [False, False]]), (2, 2))
  >>> bl.capacity, bl.by_col.line.tolist(), bl.by_col.flags.tolist()
  (2, [0, 1, 1, 1], [7, 7, 0, 0])
  >>> bl.by_row.line.tolist(), bl.by_row.flags.tolist()
  ([0, 0, 1, 1], [5, 6, 3, 0])
  >>> bool((decompress_block_list(bl)[2:] == 0).all())
  True
  """
  w = jnp.asarray(w)
  bh, bw, grid = _check_shapes(w.shape, block_shape, name)
  block_mask = jnp.asarray(block_mask)
  if block_mask.shape != grid:
    raise ValueError(f"{_where(name)}block_mask shape {block_mask.shape} must "
                     f"be the block grid {grid} of the {w.shape} matrix with "
                     f"blocks {(bh, bw)}.")
  concrete = not isinstance(block_mask, jax.core.Tracer)
  kept = int(np.asarray(block_mask).astype(bool).sum()) if concrete else None
  if capacity is None:
    if kept is None:
      raise ValueError(f"{_where(name)}capacity must be given when the block "
                       "mask is traced (under jit the number of stored blocks "
                       "must be static).")
    capacity = max(1, kept)
  capacity = int(capacity)
  if capacity < 1:
    raise ValueError(f"{_where(name)}capacity must be >= 1, got {capacity}.")
  if check and kept is not None and kept > capacity:
    raise ValueError(f"{_where(name)}the block mask keeps {kept} blocks but "
                     f"the block list capacity is {capacity} (rule: kept "
                     "blocks <= capacity).")
  bl = _build(w, block_mask.astype(bool), block_shape=(bh, bw),
              capacity=capacity)
  if check and kept is None:
    _overflow_check(bl.nnz, capacity, name)
  return bl


def _order(line_b, red_b, data_b, valid_b, lines):
  """The walk over blocks sorted by line (invalid blocks last)."""
  cap = line_b.shape[0]
  steps = cap + lines
  i32 = jnp.int32
  count = jnp.zeros((lines,), i32).at[line_b].add(valid_b.astype(i32),
                                                  mode="drop")
  per_line = jnp.maximum(count, 1)
  start = jnp.cumsum(per_line) - per_line
  used = jnp.sum(per_line)
  cstart = jnp.cumsum(count) - count
  # Step of every valid block: its line's start plus its rank in the line.
  rank = jnp.arange(cap, dtype=i32) - cstart[jnp.clip(line_b, 0, lines - 1)]
  bstep = jnp.where(valid_b, start[jnp.clip(line_b, 0, lines - 1)] + rank,
                    steps)
  has = jnp.zeros((steps,), bool).at[bstep].set(True, mode="drop")
  red = jnp.zeros((steps,), i32).at[bstep].set(red_b, mode="drop")
  data = jnp.zeros((steps,), i32).at[bstep].set(data_b, mode="drop")
  s = jnp.arange(steps, dtype=i32)
  # data_next: steps without a block take the next block's indices (the
  # previous one's past the last block), so they fetch nothing new.
  nxt = jax.lax.cummin(jnp.where(has, s, steps), reverse=True)
  prv = jax.lax.cummax(jnp.where(has, s, -1))
  src = jnp.where(nxt < steps, nxt, jnp.maximum(prv, 0))
  red, data = red[src], data[src]
  line = jnp.clip(jnp.searchsorted(start, s, side="right") - 1, 0,
                  lines - 1).astype(i32)
  first = (s == start[line]) & (s < used)
  last = (s == start[line] + per_line[line] - 1) & (s < used)
  flags = (first * FIRST + last * LAST + has * VALID).astype(i32)
  return BlockOrder(line=line, red=red, data=data, flags=flags,
                    start=start.astype(i32), count=count)


@functools.partial(jax.jit, static_argnames=("block_shape", "capacity"))
def _build(w, block_mask, *, block_shape, capacity):
  bh, bw = block_shape
  nr, nc = block_mask.shape
  total = nr * nc
  (pos,) = jnp.nonzero(block_mask.reshape(-1), size=capacity,
                       fill_value=total)
  valid = pos < total
  safe = jnp.where(valid, pos, 0)
  rows = jnp.where(valid, safe // nc, 0).astype(jnp.int32)
  cols = jnp.where(valid, safe % nc, 0).astype(jnp.int32)
  blocks = w.reshape(nr, bh, nc, bw).transpose(0, 2, 1, 3).reshape(
      total, bh, bw)
  values = jnp.where(valid[:, None, None], blocks[safe],
                     jnp.zeros((), w.dtype))
  nnz = block_mask.sum(dtype=jnp.int32)
  data = jnp.arange(capacity, dtype=jnp.int32)
  by_row = _order(jnp.where(valid, rows, nr), cols, data, valid, nr)
  key = jnp.where(valid, cols * nr + rows, total)
  perm = jnp.argsort(key, stable=True).astype(jnp.int32)
  by_col = _order(jnp.where(valid[perm], cols[perm], nc), rows[perm], perm,
                  valid[perm], nc)
  small = jnp.int16 if max(nr, nc) < 2 ** 15 else jnp.int32
  return BlockList(values=values, rows=rows.astype(small),
                   cols=cols.astype(small), nnz=nnz,
                   by_row=by_row, by_col=by_col, shape=tuple(w.shape),
                   block_shape=(bh, bw))


def _stored_block_mask(b):
  from pallas_kernels.formats._block import decompress_block
  ones = dataclasses.replace(b, values=jnp.ones(b.values.shape, jnp.float32))
  bh, bw = b.block_shape
  nr, nc = b.grid
  return decompress_block(ones).reshape(nr, bh, nc, bw).any(axis=(1, 3))


def to_block_list(b, *, capacity: int | None = None,
                  name: str | None = None) -> BlockList:
  """Converts a :class:`~pallas_kernels.formats.BSR` or padded matrix once.

  Run it once (at export, or on first use) and keep the result: the kernels
  then walk only the stored blocks and nothing is expanded per call. A stored
  block that happens to be all zeros is kept (the structure decides).

  Args:
    b: a ``BSR`` or ``PaddedBlockSparse`` (either ``major``).
    capacity: stored-block slots; defaults to the stored count (concrete
      input), else required.
    name: layer name used in error messages.

  >>> from pallas_kernels.formats import compress_bsr
  >>> b = compress_bsr(jnp.ones((4, 4)), jnp.eye(2, dtype=bool), (2, 2), major="col")
  >>> bl = to_block_list(b)
  >>> bl.rows.tolist(), bl.cols.tolist()
  ([0, 1], [0, 1])
  """
  from pallas_kernels.formats._block import BSR
  from pallas_kernels.formats._block import decompress_block
  from pallas_kernels.formats._block import PaddedBlockSparse
  if not isinstance(b, (BSR, PaddedBlockSparse)):
    raise TypeError(f"{_where(name)}to_block_list expects BSR or "
                    f"PaddedBlockSparse, got {type(b).__name__}.")
  return block_list_from_mask(decompress_block(b), _stored_block_mask(b),
                              b.block_shape, capacity=capacity, name=name)


def decompress_block_list(bl: BlockList) -> jax.Array:
  """Expands a :class:`BlockList` to its dense matrix.

  >>> bl = block_list_from_mask(jnp.ones((4, 6)), jnp.array([[1, 0, 1], [0, 0, 0]], bool), (2, 2))
  >>> decompress_block_list(bl).sum()
  Array(8., dtype=float32)
  """
  if not isinstance(bl, BlockList):
    raise TypeError(f"expected BlockList, got {type(bl).__name__}.")
  return _decompress(bl)


@jax.jit
def _decompress(bl):
  bh, bw = bl.block_shape
  nr, nc = bl.grid
  rows = jnp.where(bl.valid, bl.rows, nr)
  dense = jnp.zeros((nr, nc, bh, bw), bl.values.dtype)
  dense = dense.at[rows, bl.cols].set(bl.values, mode="drop")
  return dense.transpose(0, 2, 1, 3).reshape(bl.shape)


def check_block_list(bl, *, shape=None, block_shape=None,
                     name: str | None = None) -> BlockList:
  """Checks that ``bl`` is a consistent :class:`BlockList` (and its shape).

  Args:
    bl: the block list.
    shape: the dense shape the caller expects, if any.
    block_shape: the block shape the caller expects, if any.
    name: layer name used in error messages.

  Returns:
    ``bl``, unchanged.

  >>> bl = block_list_from_mask(jnp.ones((4, 4)), jnp.eye(2, dtype=bool), (2, 2))
  >>> check_block_list(bl, shape=(4, 8), name="fc1")
  Traceback (most recent call last):
  ...
  ValueError: layer 'fc1': the block list was built for a (4, 4) matrix, but this layer needs (4, 8).
  """
  if not isinstance(bl, BlockList):
    raise TypeError(f"{_where(name)}expected a BlockList, got "
                    f"{type(bl).__name__}.")
  if shape is not None and tuple(shape) != tuple(bl.shape):
    raise ValueError(f"{_where(name)}the block list was built for a "
                     f"{tuple(bl.shape)} matrix, but this layer needs "
                     f"{tuple(shape)}.")
  if block_shape is not None and tuple(block_shape) != tuple(bl.block_shape):
    raise ValueError(f"{_where(name)}the block list has blocks "
                     f"{tuple(bl.block_shape)}, but this layer needs "
                     f"{tuple(block_shape)}.")
  bh, bw, (nr, nc) = _check_shapes(bl.shape, bl.block_shape, name)
  cap = bl.values.shape[0]
  problems = []
  if bl.values.ndim != 3 or bl.values.shape[1:] != (bh, bw):
    problems.append(f"values {bl.values.shape} are not (capacity, {bh}, {bw})")
  for tag, order, lines in (("by_row", bl.by_row, nr),
                            ("by_col", bl.by_col, nc)):
    if order.start.shape != (lines,) or order.line.shape != (cap + lines,):
      problems.append(f"{tag} has {order.start.shape[0]} lines and "
                      f"{order.line.shape[0]} steps, expected {lines} lines "
                      f"and {cap + lines} steps")
  if problems:
    raise ValueError(f"{_where(name)}inconsistent block list for a "
                     f"{tuple(bl.shape)} matrix with blocks {(bh, bw)}: "
                     + "; ".join(problems) + ".")
  return bl
