"""Block-sparse products on the flat block-list layout, forward and backward.

* :func:`block_list_matmul` -- ``x @ W``: dense activations, block-sparse
  weight ``W (K, N)`` as a :class:`~pallas_kernels.formats.BlockList`.
* :func:`block_list_sparse_dense_matmul` -- ``A @ X``: block-sparse ``A (M, K)``
  times a dense ``X``.

Both have custom VJPs that stay block-sparse: the input gradient walks the
transposed block order (``g @ W.T`` through ``by_row``, ``A.T @ g`` through
``by_col``) on the same kernel, and the weight gradient is computed for the
stored blocks only (a batched gather-matmul over the ``capacity`` blocks, in
XLA). Build the block list once with
:func:`~pallas_kernels.formats.to_block_list` (from BSR / padded) or, for a
mask that changes during training, inside the jitted step with
:func:`~pallas_kernels.formats.block_list_from_mask` and a fixed capacity: the
compiled step is reused for every mask.

Implementations (:data:`IMPLEMENTATIONS`):

* ``"xla"`` -- gather-matmul-scatter over the stored blocks (any backend).
* ``"tpu"`` -- Mosaic TPU, one grid step per stored block (plus one per empty
  output line), scalar-prefetched ``line/red/data/flags`` driving the index
  maps, idle steps repeating the next block's indices (no DMA), value blocks
  double buffered (the most Mosaic's grid pipeline takes). Lowering needs blocks that are multiples of 128 (prefer
  256 or more: a grid step costs a fixed overhead that large blocks
  amortise); the metadata must fit the scalar-memory budget.
* ``"triton"`` -- Pallas Triton, one program per (batch tile, segment); lines
  longer than the balanced share are split into segments whose f32 partial
  sums are added afterwards, so at decode batch the busiest program holds no
  more than its share. Blocks must be powers of two >= 16 (64 and 128 are the
  intended sizes).

No speed is claimed for any of them here (unmeasured).
"""
from __future__ import annotations

import dataclasses
import functools
import weakref
from typing import Any

import jax
import jax.numpy as jnp

from pallas_kernels import _compat
from pallas_kernels.block_sparse import kernel_gpu
from pallas_kernels.block_sparse import kernel_tpu
from pallas_kernels.formats._block import BSR
from pallas_kernels.formats._block import PaddedBlockSparse
from pallas_kernels.formats._block_list import BlockList
from pallas_kernels.formats._block_list import check_block_list
from pallas_kernels.formats._block_list import smem_bytes
from pallas_kernels.formats._block_list import to_block_list

__all__ = ["block_list_matmul", "block_list_sparse_dense_matmul",
           "as_block_list", "default_implementation", "IMPLEMENTATIONS",
           "TPU_SMEM_BUDGET_BYTES", "GPU_TARGET_PROGRAMS"]

IMPLEMENTATIONS = {
    "xla": "gather-matmul-scatter over the stored blocks (any backend)",
    "triton": "Pallas Triton, balanced segments of the block list (GPU)",
    "tpu": "Mosaic TPU, one grid step per stored block (scalar prefetch)",
}
_NATIVE = {"xla": None, "triton": "gpu", "tpu": "tpu"}

# Scalar memory is 1 MiB per core on TPU v4 and later (16 KiB on v2/v3); half
# is left to Mosaic and other operands.
TPU_SMEM_BUDGET_BYTES = 512 * 1024
# About two programs per SM on an H100/H200 (132 SMs).
GPU_TARGET_PROGRAMS = 264

_HI = jax.lax.Precision.HIGHEST


def _where(name):
  return f"layer {name!r}: " if name else ""


def _round_up(a, b):
  return -(-a // b) * b


def _pad_to(x, axis, tile):
  """``x`` zero-padded at the end of ``axis`` to a multiple of ``tile``."""
  pad = [(0, 0)] * x.ndim
  pad[axis] = (0, _round_up(x.shape[axis], tile) - x.shape[axis])
  return jnp.pad(x, pad)


def _pow2_at_least(v, lo):
  return max(lo, 1 << max(0, (v - 1).bit_length()))


def default_implementation(platform: str | None = None) -> str:
  """The implementation used when none is given: the platform's kernel.

  >>> default_implementation("tpu"), default_implementation("gpu"), default_implementation("cpu")
  ('tpu', 'triton', 'xla')
  """
  platform = platform or _compat.backend()
  return {"tpu": "tpu", "gpu": "triton"}.get(platform, "xla")


@dataclasses.dataclass(frozen=True)
class _Cfg:
  op: str            # "dsd" (x @ W) or "sdd" (A @ X)
  impl: str
  interpret: Any
  odt: Any
  split: int | None
  stages: int
  name: str | None


def _walk(struct, op, transpose):
  """(order, line ids, red ids, lines, nred) for one product direction."""
  nr, nc = struct.grid
  by_col = (op == "dsd") != transpose
  if by_col:
    return struct.by_col, struct.cols, struct.rows, nc, nr
  return struct.by_row, struct.rows, struct.cols, nr, nc


# ---------------------------------------------------------------- XLA path


def _xla_dsd(x, values, struct, transpose):
  bh, bw = struct.block_shape
  _, line_b, red_b, lines, nred = _walk(struct, "dsd", transpose)
  kin, kout = (bw, bh) if transpose else (bh, bw)
  xb = x.reshape(x.shape[0], nred, kin)[:, red_b]
  eq = "bck,cnk->bcn" if transpose else "bck,ckn->bcn"
  contrib = jnp.einsum(eq, xb, values, preferred_element_type=jnp.float32,
                       precision=_HI)
  line = jnp.where(struct.valid, line_b, lines)
  out = jnp.zeros((x.shape[0], lines, kout), jnp.float32)
  out = out.at[:, line].add(contrib, mode="drop")
  return out.reshape(x.shape[0], lines * kout)


def _xla_sdd(values, struct, x, transpose):
  bh, bw = struct.block_shape
  _, line_b, red_b, lines, nred = _walk(struct, "sdd", transpose)
  kin, kout = (bh, bw) if transpose else (bw, bh)
  xb = x.reshape(nred, kin, x.shape[1])[red_b]
  eq = "ckm,ckn->cmn" if transpose else "cmk,ckn->cmn"
  contrib = jnp.einsum(eq, values, xb, preferred_element_type=jnp.float32,
                       precision=_HI)
  line = jnp.where(struct.valid, line_b, lines)
  out = jnp.zeros((lines, kout, x.shape[1]), jnp.float32)
  out = out.at[line].add(contrib, mode="drop")
  return out.reshape(lines * kout, x.shape[1])


# ------------------------------------------------------------- GPU segments


def _choose_split(cap, lines, nred, n_tiles, split):
  """Blocks per segment, or None for one segment per line (direct)."""
  if split is not None:
    return None if split >= nred else max(1, int(split))
  if n_tiles * lines >= GPU_TARGET_PROGRAMS:
    return None
  s = max(1, -(-cap * n_tiles // GPU_TARGET_PROGRAMS))
  return None if s >= nred else s


def _segments(order, split):
  """(seg_start, seg_len, seg_line) with ``split`` blocks per segment."""
  lines = order.lines
  cap = order.steps - lines
  cnt = order.count
  nseg = jnp.maximum(1, -(-cnt // split))
  g_cap = -(-cap // split) + lines
  cum = jnp.cumsum(nseg)
  g = jnp.arange(g_cap, dtype=jnp.int32)
  line = jnp.clip(jnp.searchsorted(cum, g, side="right"), 0,
                  lines - 1).astype(jnp.int32)
  k = g - (cum[line] - nseg[line])
  used = g < cum[-1]
  start = (order.start[line] + k * split).astype(jnp.int32)
  length = jnp.where(used, jnp.clip(cnt[line] - k * split, 0, split), 0)
  return start, length.astype(jnp.int32), jnp.where(used, line, lines)


def _gpu_segmented(run, order, struct, lines, nred, programs, kout, axis,
                   cfg):
  """``run(seg_start, seg_len, out_dtype)`` over whole output lines or, when
  :func:`_choose_split` splits them, over segments whose f32 partial sums
  are added per line; output lines of ``kout`` run along ``axis``."""
  split = _choose_split(struct.capacity, lines, nred, programs, cfg.split)
  if split is None:
    return run(order.start, order.count, cfg.odt)
  start, length, seg_line = _segments(order, split)
  part = run(start, length, jnp.float32)
  if axis == 1:
    b = part.shape[0]
    part = part.reshape(b, start.shape[0], kout)
    out = jnp.zeros((b, lines, kout), jnp.float32)
    out = out.at[:, seg_line].add(part, mode="drop")
    return out.reshape(b, lines * kout)
  n = part.shape[1]
  part = part.reshape(start.shape[0], kout, n)
  out = jnp.zeros((lines, kout, n), jnp.float32)
  out = out.at[seg_line].add(part, mode="drop")
  return out.reshape(lines * kout, n)


def _gpu_dsd(x, values, struct, transpose, cfg):
  order, _, _, lines, nred = _walk(struct, "dsd", transpose)
  bh, bw = struct.block_shape
  b = x.shape[0]
  tb = min(64, _pow2_at_least(b, 16))
  xp = _pad_to(x, 0, tb)

  def run(start, length, out_dtype):
    return kernel_gpu.block_list_dsd_gpu(
        xp, values, order, start, length, transpose=transpose, tb=tb,
        out_dtype=out_dtype, interpret=cfg.interpret)[:b]

  return _gpu_segmented(run, order, struct, lines, nred, xp.shape[0] // tb,
                        bh if transpose else bw, 1, cfg)


def _gpu_sdd(values, struct, x, transpose, cfg):
  order, _, _, lines, nred = _walk(struct, "sdd", transpose)
  bh, bw = struct.block_shape
  n = x.shape[1]
  tn = min(128, _pow2_at_least(n, 16))
  xp = _pad_to(x, 1, tn)

  def run(start, length, out_dtype):
    return kernel_gpu.block_list_sdd_gpu(
        values, order, start, length, xp, transpose=transpose, tn=tn,
        out_dtype=out_dtype, interpret=cfg.interpret)[:, :n]

  return _gpu_segmented(run, order, struct, lines, nred, xp.shape[1] // tn,
                        bw if transpose else bh, 0, cfg)


# ------------------------------------------------------------------ TPU path


def _tpu_dsd(x, values, struct, transpose, cfg):
  order, _, _, lines, _ = _walk(struct, "dsd", transpose)
  b = x.shape[0]
  tb = min(256, _round_up(b, 16))
  xp = _pad_to(x, 0, tb)
  return kernel_tpu.block_list_dsd_tpu(
      xp, values, order, lines=lines, transpose=transpose, tb=tb,
      out_dtype=cfg.odt, interpret=cfg.interpret, stages=cfg.stages)[:b]


def _tpu_sdd(values, struct, x, transpose, cfg):
  order, _, _, lines, _ = _walk(struct, "sdd", transpose)
  n = x.shape[1]
  tn = min(512, _round_up(n, 128))
  xp = _pad_to(x, 1, tn)
  return kernel_tpu.block_list_sdd_tpu(
      values, order, xp, lines=lines, transpose=transpose, tn=tn,
      out_dtype=cfg.odt, interpret=cfg.interpret, stages=cfg.stages)[:, :n]


def _apply(cfg, a, values, struct, transpose):
  """One product on the configured implementation (``a`` is the dense side)."""
  if cfg.op == "dsd":
    fn = {"xla": None, "triton": _gpu_dsd, "tpu": _tpu_dsd}[cfg.impl]
    if fn is None:
      return _xla_dsd(a, values, struct, transpose).astype(cfg.odt)
    return fn(a, values, struct, transpose, cfg).astype(cfg.odt)
  fn = {"xla": None, "triton": _gpu_sdd, "tpu": _tpu_sdd}[cfg.impl]
  if fn is None:
    return _xla_sdd(values, struct, a, transpose).astype(cfg.odt)
  return fn(values, struct, a, transpose, cfg).astype(cfg.odt)


# ------------------------------------------------------------- custom VJPs


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _product(a, values, struct, cfg):
  return _apply(cfg, a, values, struct, False)


def _product_fwd(a, values, struct, cfg):
  return _product(a, values, struct, cfg), (a, values, struct)


def _product_bwd(cfg, res, g):
  a, values, struct = res
  bh, bw = struct.block_shape
  nr, nc = struct.grid
  valid = struct.valid[:, None, None]
  gcfg = dataclasses.replace(cfg, odt=a.dtype)
  # Input gradient: the transposed walk, on the same implementation.
  da = _apply(gcfg, g, values, struct, True)
  # Weight gradient for the stored blocks only.
  if cfg.op == "dsd":   # y = x @ W: dW[r, c] = x[:, r].T @ g[:, c]
    xr = a.reshape(a.shape[0], nr, bh)[:, struct.rows]
    gc = g.reshape(g.shape[0], nc, bw)[:, struct.cols]
    dv = jnp.einsum("bci,bcj->cij", xr, gc,
                    preferred_element_type=jnp.float32, precision=_HI)
  else:                 # y = A @ X: dA[r, c] = g[r] @ X[c].T
    gr = g.reshape(nr, bh, g.shape[1])[struct.rows]
    xc = a.reshape(nc, bw, a.shape[1])[struct.cols]
    dv = jnp.einsum("cin,cjn->cij", gr, xc,
                    preferred_element_type=jnp.float32, precision=_HI)
  dv = jnp.where(valid, dv, 0).astype(values.dtype)
  return da.astype(a.dtype), dv, None


_product.defvjp(_product_fwd, _product_bwd)


# --------------------------------------------------------------- checks


def _resolve(implementation, interpret, name):
  impl = implementation or default_implementation()
  if impl not in IMPLEMENTATIONS:
    raise ValueError(f"{_where(name)}implementation must be None or one of "
                     f"{tuple(IMPLEMENTATIONS)}, got {implementation!r}.")
  if impl == "triton" and not _compat.HAS_TRITON:
    raise RuntimeError(f"{_where(name)}this jaxlib has no Pallas Triton "
                       "lowering; use implementation='xla'.")
  if interpret is None:
    native = _NATIVE[impl]
    interpret = native is not None and _compat.backend() != native
  return impl, interpret


def _check_kernel_rules(bl, op, impl, interpret, smem_budget, name):
  bh, bw = bl.block_shape
  if impl == "triton":
    ok = all(v >= 16 and v & (v - 1) == 0 for v in (bh, bw))
    if not ok:
      raise ValueError(f"{_where(name)}the Triton kernel needs blocks that "
                       f"are powers of two >= 16, got {(bh, bw)}; use "
                       "implementation='xla' or recompress.")
  if impl == "tpu":
    need = max(smem_bytes(bl.by_row), smem_bytes(bl.by_col))
    if need > smem_budget:
      raise ValueError(
          f"{_where(name)}the block-list metadata needs {need} bytes of TPU "
          f"scalar memory (SMEM), over the {smem_budget}-byte budget "
          f"(capacity {bl.capacity}, grid {bl.grid}); use larger blocks, a "
          "smaller capacity, or implementation='xla'.")
    del op  # both products (and their transposed gradients) need this
    if not interpret and (bh % 128 or bw % 128):
      raise ValueError(f"{_where(name)}the TPU kernel needs blocks that are "
                       f"multiples of 128 (256 or more preferred), got "
                       f"{(bh, bw)}; use implementation='xla'.")


_CONVERTED: dict[int, tuple[Any, BlockList]] = {}


def as_block_list(w, *, name: str | None = None) -> BlockList:
  """``w`` as a :class:`BlockList`, converting a BSR/padded matrix once.

  A :class:`~pallas_kernels.formats.BSR` or
  :class:`~pallas_kernels.formats.PaddedBlockSparse` with concrete arrays is
  converted on first use and the result is kept for as long as ``w`` lives,
  so later calls with the same object do no conversion. Under ``jit`` (traced
  arrays) convert beforehand with
  :func:`~pallas_kernels.formats.to_block_list` (or build the list with
  :func:`~pallas_kernels.formats.block_list_from_mask`).

  >>> from pallas_kernels.formats import compress_bsr
  >>> b = compress_bsr(jnp.ones((4, 4)), jnp.eye(2, dtype=bool), (2, 2))
  >>> as_block_list(b) is as_block_list(b)
  True
  """
  if isinstance(w, BlockList):
    return w
  if not isinstance(w, (BSR, PaddedBlockSparse)):
    raise TypeError(f"{_where(name)}expected a BlockList, BSR or "
                    f"PaddedBlockSparse, got {type(w).__name__}.")
  if any(isinstance(l, jax.core.Tracer) for l in jax.tree.leaves(w)):
    raise ValueError(f"{_where(name)}a traced {type(w).__name__} would be "
                     "converted on every call; convert it once outside jit "
                     "with to_block_list (or build the block list from the "
                     "mask with block_list_from_mask).")
  hit = _CONVERTED.get(id(w))
  if hit is not None and hit[0]() is w:
    return hit[1]
  bl = to_block_list(w, name=name)
  _CONVERTED[id(w)] = (weakref.ref(w), bl)
  weakref.finalize(w, _CONVERTED.pop, id(w), None)
  return bl


def _struct(bl):
  return dataclasses.replace(bl, values=None)


def block_list_matmul(x, w: BlockList | BSR | PaddedBlockSparse, *, implementation: str | None = None,
                      interpret: Any = None, name: str | None = None,
                      split: int | None = None, stages: int = 2,
                      smem_budget: int = TPU_SMEM_BUDGET_BYTES) -> jax.Array:
  """Computes ``x @ W`` for dense ``x`` and a block-list weight ``W (K, N)``.

  Differentiable in ``x`` and ``w.values`` (custom VJP, both gradients
  block-sparse). Works under ``jit`` with a ``w`` built inside it.

  Args:
    x: ``(..., K)`` activations.
    w: the weight as a :class:`~pallas_kernels.formats.BlockList` (a
      concrete BSR / padded matrix is converted once, see
      :func:`as_block_list`).
    implementation: ``None`` (the platform's kernel, see
      :func:`default_implementation`), ``"xla"``, ``"triton"`` or ``"tpu"``.
    interpret: run a Pallas kernel in interpret mode (a bool or
      ``pltpu.InterpretParams``); defaults to True off its platform.
    name: layer name used in error messages.
    split: Triton only: blocks per segment (``None`` balances automatically;
      a value >= the number of block rows gives one segment per line).
    stages: TPU only: pipeline buffers for the weight blocks (1 or 2).
    smem_budget: TPU only: scalar-memory bytes the metadata may use.

  Returns:
    ``(..., N)`` in the promoted dtype, accumulated in f32.

  >>> from pallas_kernels.formats import block_list_from_mask
  >>> w = block_list_from_mask(jnp.ones((32, 32)), jnp.eye(2, dtype=bool), (16, 16))
  >>> block_list_matmul(jnp.ones((1, 32)), w, implementation="triton")[0, ::16]
  Array([16., 16.], dtype=float32)
  >>> block_list_matmul(jnp.ones((1, 16)), w, name="fc1")
  Traceback (most recent call last):
  ...
  ValueError: layer 'fc1': x has K=16 features, but the block list was built for a (32, 32) matrix (rule: x.shape[-1] == W.shape[0]).
  """
  x = jnp.asarray(x)
  if isinstance(w, (BSR, PaddedBlockSparse)):
    w = as_block_list(w, name=name)
  check_block_list(w, name=name)
  if x.ndim < 1 or x.shape[-1] != w.shape[0]:
    raise ValueError(f"{_where(name)}x has K={x.shape[-1] if x.ndim else 0} "
                     f"features, but the block list was built for a "
                     f"{tuple(w.shape)} matrix (rule: x.shape[-1] == "
                     "W.shape[0]).")
  impl, interp = _resolve(implementation, interpret, name)
  _check_kernel_rules(w, "dsd", impl, interp, smem_budget, name)
  odt = jnp.result_type(x.dtype, w.values.dtype)
  cfg = _Cfg("dsd", impl, interp, odt, split, stages, name)
  lead = x.shape[:-1]
  out = _product(x.reshape(-1, w.shape[0]), w.values, _struct(w), cfg)
  return out.reshape(*lead, w.shape[1])


def block_list_sparse_dense_matmul(
    a: BlockList | BSR | PaddedBlockSparse, x, *, implementation: str | None = None,
    interpret: Any = None, name: str | None = None, split: int | None = None,
    stages: int = 2, smem_budget: int = TPU_SMEM_BUDGET_BYTES) -> jax.Array:
  """Computes ``A @ x`` for a block-list ``A (M, K)`` and dense ``x (K, N)``.

  Differentiable in ``x`` and ``a.values`` (custom VJP; ``A.T @ g`` walks the
  transposed block order).

  Args:
    a: the sparse matrix as a :class:`~pallas_kernels.formats.BlockList`
      (or a concrete BSR / padded matrix, converted once).
    x: ``(K, N)`` dense matrix.
    implementation: as in :func:`block_list_matmul`.
    interpret: as in :func:`block_list_matmul`.
    name: layer name used in error messages.
    split: Triton only: blocks per segment (see :func:`block_list_matmul`).
    stages: TPU only: pipeline buffers for the sparse blocks (1 or 2).
    smem_budget: TPU only: scalar-memory bytes the metadata may use.

  Returns:
    ``(M, N)`` in the promoted dtype, accumulated in f32.

  >>> from pallas_kernels.formats import block_list_from_mask
  >>> a = block_list_from_mask(jnp.ones((4, 4)), jnp.array([[1, 0], [0, 0]], bool), (2, 2))
  >>> block_list_sparse_dense_matmul(a, jnp.ones((4, 1)), implementation="tpu")[:, 0]
  Array([2., 2., 0., 0.], dtype=float32)
  """
  x = jnp.asarray(x)
  if isinstance(a, (BSR, PaddedBlockSparse)):
    a = as_block_list(a, name=name)
  check_block_list(a, name=name)
  if x.ndim != 2 or x.shape[0] != a.shape[1]:
    raise ValueError(f"{_where(name)}x must be 2-D with x.shape[0] == "
                     f"K={a.shape[1]} of the {tuple(a.shape)} block list, got "
                     f"{x.shape}.")
  impl, interp = _resolve(implementation, interpret, name)
  _check_kernel_rules(a, "sdd", impl, interp, smem_budget, name)
  odt = jnp.result_type(x.dtype, a.values.dtype)
  cfg = _Cfg("sdd", impl, interp, odt, split, stages, name)
  return _product(x, a.values, _struct(a), cfg)
