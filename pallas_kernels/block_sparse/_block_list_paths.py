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
the weight gradient is computed for the stored blocks only.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from pallas_kernels.block_sparse import kernel_gpu
from pallas_kernels.block_sparse import kernel_tpu
from pallas_kernels.formats._block_list import decompress_block_list

# About two programs per SM on an H100/H200 (132 SMs).
GPU_TARGET_PROGRAMS = 264

_HI = jax.lax.Precision.HIGHEST


def _round_up(a, b):
  return -(-a // b) * b


def _pad_to(x, axis, tile):
  """``x`` zero-padded at the end of ``axis`` to a multiple of ``tile``."""
  pad = [(0, 0)] * x.ndim
  pad[axis] = (0, _round_up(x.shape[axis], tile) - x.shape[axis])
  return jnp.pad(x, pad)


def _pow2_at_least(v, lo):
  return max(lo, 1 << max(0, (v - 1).bit_length()))


@dataclasses.dataclass(frozen=True)
class Cfg:
  """How a product runs: op, implementation and the kernels' options."""
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
  if cfg.impl == "xla":
    out = _xla_dense(a, values, struct, cfg.op, transpose)
  elif cfg.impl == "xla_blocks":
    out = (_xla_dsd(a, values, struct, transpose) if cfg.op == "dsd" else
           _xla_sdd(values, struct, a, transpose))
  elif cfg.op == "dsd":
    fn = {"triton": _gpu_dsd, "tpu": _tpu_dsd}[cfg.impl]
    out = fn(a, values, struct, transpose, cfg)
  else:
    fn = {"triton": _gpu_sdd, "tpu": _tpu_sdd}[cfg.impl]
    out = fn(values, struct, a, transpose, cfg)
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


product.defvjp(_product_fwd, _product_bwd)

