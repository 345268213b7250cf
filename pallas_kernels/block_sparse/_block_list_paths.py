"""The block-list products' implementations and their block-sparse custom VJP.

Private to :mod:`pallas_kernels.block_sparse.block_list_api`, which checks the
operands and chooses the implementation (:class:`Cfg`); here each product
runs on it:

* ``"xla"`` -- XLA dense ``jnp.dot`` on the expanded matrix (the dispatch's
  fallback);
* ``"xla_blocks"`` -- XLA gather-matmul-scatter over the stored blocks;
* ``"triton"`` -- Pallas Triton over balanced segments of the block list;
* ``"tpu"`` -- Mosaic TPU, one grid step per stored block.

The input gradient runs the transposed product on the same implementation;
the weight gradient is computed for the stored blocks only, by the SDDMM of
:mod:`pallas_kernels.block_sparse._sddmm_paths` on ``Cfg.dw_impl``.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from pallas_kernels.block_sparse import kernel_gpu
from pallas_kernels.block_sparse import kernel_tpu
from pallas_kernels.block_sparse._padding import pad_to
from pallas_kernels.block_sparse._padding import pow2_at_least
from pallas_kernels.block_sparse._padding import round_up
from pallas_kernels.block_sparse._sddmm_paths import sampled_product
from pallas_kernels.formats._block_list import decompress_block_list

# About two programs per SM on an H100/H200 (132 SMs).
GPU_TARGET_PROGRAMS = 264

_HI = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class Cfg:
  """How a product runs: op, implementation and the kernels' options."""
  op: str            # "dsd" (x @ W), "sdd" (A @ X) or "sddmm"
  impl: str
  interpret: Any
  odt: Any
  split: int | None
  stages: int
  name: str | None
  dw_impl: str = "xla"   # the weight gradient's SDDMM (see _sddmm_paths)


def _walk(struct, op, transpose):
  """(order, line ids, red ids, lines, nred) for one product direction."""
  nr, nc = struct.grid
  by_col = (op == "dsd") != transpose
  if by_col:
    return struct.by_col, struct.cols, struct.rows, nc, nr
  return struct.by_row, struct.rows, struct.cols, nr, nc


# ---------------------------------------------------------------- XLA paths


def _xla_dense(a, values, struct, op, transpose):
  """The product on the expanded matrix (XLA dense ``jnp.dot``)."""
  w = decompress_block_list(dataclasses.replace(struct, values=values))
  w = w.T if transpose else w
  if op == "dsd":
    return jnp.dot(a, w, preferred_element_type=jnp.float32)
  return jnp.dot(w, a, preferred_element_type=jnp.float32)


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


def _tile(cfg, free):
  """The kernel's tile of the dense operand's free axis (``free`` long)."""
  if cfg.impl == "triton":
    return min(64 if cfg.op == "dsd" else 128, pow2_at_least(free, 16))
  if cfg.op == "dsd":
    return min(256, round_up(free, 16))
  return min(512, round_up(free, 128))


def _kernel(a, values, struct, transpose, cfg):
  """One product on a Pallas kernel (``cfg.impl`` "triton" or "tpu").

  The dense operand's free axis (rows of ``x`` for ``x @ W``, columns of
  ``X`` for ``A @ X``) is padded to the kernel's tile and cut back after.
  """
  order, _, _, lines, nred = _walk(struct, cfg.op, transpose)
  bh, bw = struct.block_shape
  axis = 0 if cfg.op == "dsd" else 1
  free = a.shape[axis]
  tile = _tile(cfg, free)
  ap = pad_to(a, axis, tile)
  kw = dict(transpose=transpose, interpret=cfg.interpret)
  if cfg.impl == "tpu":
    kw.update(lines=lines, out_dtype=cfg.odt, stages=cfg.stages)
    out = (kernel_tpu.block_list_dsd_tpu(ap, values, order, tb=tile, **kw)
           if cfg.op == "dsd" else
           kernel_tpu.block_list_sdd_tpu(values, order, ap, tn=tile, **kw))
  else:
    def run(start, length, out_dtype):
      if cfg.op == "dsd":
        return kernel_gpu.block_list_dsd_gpu(ap, values, order, start, length,
                                             tb=tile, out_dtype=out_dtype,
                                             **kw)
      return kernel_gpu.block_list_sdd_gpu(values, order, start, length, ap,
                                           tn=tile, out_dtype=out_dtype, **kw)

    kout = (bh if transpose else bw) if cfg.op == "dsd" else (
        bw if transpose else bh)
    out = _gpu_segmented(run, order, struct, lines, nred,
                         ap.shape[axis] // tile, kout, 1 - axis, cfg)
  return jax.lax.slice_in_dim(out, 0, free, axis=axis)


def _apply(cfg, a, values, struct, transpose):
  """One product on the configured implementation (``a`` is the dense side)."""
  if cfg.impl == "xla":
    out = _xla_dense(a, values, struct, cfg.op, transpose)
  elif cfg.impl == "xla_blocks":
    out = (_xla_dsd(a, values, struct, transpose) if cfg.op == "dsd" else
           _xla_sdd(values, struct, a, transpose))
  else:
    out = _kernel(a, values, struct, transpose, cfg)
  return out.astype(cfg.odt)


# ------------------------------------------------------------- custom VJPs


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def product(a, values, struct, cfg):
  """The product of dense ``a`` and the block list ``(values, struct)``."""
  return _apply(cfg, a, values, struct, False)


def _product_fwd(a, values, struct, cfg):
  return product(a, values, struct, cfg), (a, values, struct)


def _product_bwd(cfg, res, g):
  a, values, struct = res
  gcfg = dataclasses.replace(cfg, odt=a.dtype)
  # Input gradient: the transposed walk, on the same implementation.
  da = _apply(gcfg, g, values, struct, True)
  # Weight gradient: the stored blocks only (SDDMM on cfg.dw_impl).
  # y = x @ W: dW[r, c] = x[:, r].T @ g[:, c];  y = A @ X: dA[r, c] = g[r] @ X[c].T
  ops = (a, g, 0) if cfg.op == "dsd" else (g, a, 1)
  dv = sampled_product(ops[0], ops[1], struct, contract=ops[2],
                       impl=cfg.dw_impl, interpret=cfg.interpret,
                       out_dtype=values.dtype)
  return da.astype(a.dtype), dv, None


product.defvjp(_product_fwd, _product_bwd)
