"""Block-sparse products on the flat block-list layout, forward and backward.

* :func:`block_list_matmul` -- ``x @ W``: dense activations, block-sparse
  weight ``W (K, N)`` as a :class:`~pallas_kernels.formats.BlockList`.
* :func:`block_list_sparse_dense_matmul` -- ``A @ X``: block-sparse ``A (M, K)``
  times a dense ``X``.

Both have custom VJPs that stay block-sparse: the input gradient walks the
transposed block order (``g @ W.T`` through ``by_row``, ``A.T @ g`` through
``by_col``) on the same implementation, and the weight gradient is computed
for the stored blocks only, by an SDDMM
(:func:`~pallas_kernels.block_sparse.block_list_sddmm.block_list_sddmm`): on
the forward's kernel when that kernel was requested or forced, else as the
dispatch chooses for op ``block_list_sddmm`` (the XLA gather-matmul over the
``capacity`` blocks unless a kernel was measured faster). Build the block list once with
:func:`~pallas_kernels.formats.to_block_list` (from BSR / padded) or, for a
mask that changes during training, inside the jitted step with
:func:`~pallas_kernels.formats.block_list_from_mask` and a fixed capacity: the
compiled step is reused for every mask.

Implementations (:data:`IMPLEMENTATIONS`):

* ``"xla"`` -- XLA dense ``jnp.dot`` on the expanded matrix (any backend; the
  automatic choice wherever no kernel was measured faster).
* ``"xla_blocks"`` -- XLA gather-matmul-scatter over the stored blocks (any
  backend; only when asked for).
* ``"tpu"`` -- Mosaic TPU, one grid step per stored block (plus one per empty
  output line), scalar-prefetched ``line/red/data/flags`` driving the index
  maps, idle steps repeating the next block's indices (no DMA), value blocks
  double buffered (the most Mosaic's grid pipeline takes). Lowering needs
  blocks that are multiples of 128 (prefer 256 or more: a grid step costs a
  fixed overhead that large blocks amortise); the metadata must fit the
  scalar-memory budget.
* ``"triton"`` -- Pallas Triton, one program per (batch tile, segment); lines
  longer than the balanced share are split into segments whose f32 partial
  sums are added afterwards, so at decode batch the busiest program holds no
  more than its share. Blocks must be powers of two >= 16 (64 and 128 are the
  intended sizes).

``"pallas"`` means the backend's kernel and ``"pallas_gpu"`` / ``"pallas_tpu"``
name ``"triton"`` / ``"tpu"``. ``implementation=None`` chooses by measurement
(:mod:`pallas_kernels.dispatch`, see :func:`choose_implementation`): a kernel
runs only where it was measured faster than XLA dense on this device kind;
otherwise, and always on CPU, the dense XLA path runs. No speed is claimed for
any of them here (unmeasured).
"""
from __future__ import annotations

import dataclasses
import functools
import weakref
from typing import Any

import jax
import jax.numpy as jnp

from pallas_kernels import _compat
from pallas_kernels import dispatch
from pallas_kernels.block_sparse._block_list_paths import Cfg
from pallas_kernels.block_sparse._block_list_paths import GPU_TARGET_PROGRAMS
from pallas_kernels.block_sparse._block_list_paths import product
from pallas_kernels.dispatch import Choice
from pallas_kernels.formats._block import BSR
from pallas_kernels.formats._block import PaddedBlockSparse
from pallas_kernels.formats._block_list import BlockList
from pallas_kernels.formats._block_list import check_block_list
from pallas_kernels.formats._block_list import smem_bytes
from pallas_kernels.formats._block_list import to_block_list

__all__ = ["block_list_matmul", "block_list_sparse_dense_matmul",
           "as_block_list", "choose_implementation", "pattern", "unsupported",
           "Choice",
           "IMPLEMENTATIONS", "KERNELS", "OPS", "TPU_SMEM_BUDGET_BYTES",
           "GPU_TARGET_PROGRAMS"]

# The implementations a dispatch chooses among, and the platform each runs
# natively on; "xla_blocks" (XLA, any backend) is never chosen automatically.
KERNELS = {"triton": "gpu", "tpu": "tpu", "xla_blocks": "any"}
IMPLEMENTATIONS = ("xla", *KERNELS, "pallas", "pallas_gpu", "pallas_tpu")
# The dispatch op name of each product.
OPS = {"dsd": "block_list_dsd", "sdd": "block_list_sdd",
       "sddmm": "block_list_sddmm"}

# Scalar memory is 1 MiB per core on TPU v4 and later (16 KiB on v2/v3); half
# is left to Mosaic and other operands.
TPU_SMEM_BUDGET_BYTES = 512 * 1024


def _where(name):
  return f"layer {name!r}: " if name else ""


def pattern(bl: BlockList) -> str:
  """The dispatch pattern of a block list: block shape and density bucket.

  The density is ``capacity`` over the block grid (the blocks the kernels
  walk, at most all of them), rounded up to :func:`pallas_kernels.dispatch.density_bucket`.

  >>> from pallas_kernels.formats import block_list_from_mask
  >>> pattern(block_list_from_mask(jnp.ones((64, 64)), jnp.eye(4, dtype=bool), (16, 16)))
  'b16x16/d0.25'
  """
  nr, nc = bl.grid
  bh, bw = bl.block_shape
  density = dispatch.density_bucket(min(1.0, bl.capacity / (nr * nc)))
  return f"b{bh}x{bw}/d{density:.2f}"


def unsupported(bl: BlockList, impl: str, interpret: Any = False,
                smem_budget: int = TPU_SMEM_BUDGET_BYTES) -> str | None:
  """Why implementation ``impl`` cannot run ``bl`` (None if it can).

  >>> from pallas_kernels.formats import block_list_from_mask
  >>> bl = block_list_from_mask(jnp.ones((64, 64)), jnp.eye(2, dtype=bool), (32, 32))
  >>> unsupported(bl, "triton") is None, unsupported(bl, "tpu")[:34]
  (True, 'the TPU kernel needs blocks that a')
  """
  bh, bw = bl.block_shape
  if impl == "triton":
    if not all(v >= 16 and v & (v - 1) == 0 for v in (bh, bw)):
      return (f"the Triton kernel needs blocks that are powers of two >= 16, "
              f"got {(bh, bw)}; use implementation='xla' or recompress")
  if impl == "tpu":
    need = max(smem_bytes(bl.by_row), smem_bytes(bl.by_col))
    if need > smem_budget:
      return (f"the block-list metadata needs {need} bytes of TPU scalar "
              f"memory (SMEM), over the {smem_budget}-byte budget (capacity "
              f"{bl.capacity}, grid {bl.grid}); use larger blocks, a smaller "
              "capacity, or implementation='xla'")
    if not interpret and (bh % 128 or bw % 128):
      return (f"the TPU kernel needs blocks that are multiples of 128 (256 or "
              f"more preferred), got {(bh, bw)}; use implementation='xla'")
  return None


def _suitable(bl, smem_budget) -> tuple[dict[str, str], list[str]]:
  """The kernels that can run ``bl`` natively, and why the others cannot."""
  out, why = {}, []
  for impl, platform in KERNELS.items():
    reason = unsupported(bl, impl, False, smem_budget)
    if impl == "triton" and not _compat.HAS_TRITON:
      reason = "this jaxlib has no Pallas Triton lowering"
    if reason is None:
      out[impl] = platform
    else:
      why.append(reason)
  return out, why


def _measure(bl, op: str, batch: int, dtype, smem_budget: int):
  """A ``measure`` callable for the dispatch's autotune.

  Times the op on a random block list with the same shape, blocks and
  capacity as ``bl`` (which may be traced) against XLA dense.
  """
  def measure(impls):
    # pylint: disable=g-import-not-at-top
    from pallas_kernels import _testing
    from pallas_kernels import _timing
    from pallas_kernels.formats import block_list_from_mask
    with jax.ensure_compile_time_eval():
      rows, cols = bl.shape
      nr, nc = bl.grid
      keep = min(bl.capacity, nr * nc)
      dense = jax.random.normal(jax.random.key(0), (rows, cols),
                                jnp.float32).astype(bl.values.dtype)
      w = block_list_from_mask(dense, _testing.random_block_mask(
          (nr, nc), keep), bl.block_shape)
      call = functools.partial(_timed_call, op=op, smem_budget=smem_budget)
      fns = {i: functools.partial(call, impl=i) for i in impls}
      if op in ("dsd", "sddmm"):
        x = jax.random.normal(jax.random.key(1), (batch, rows),
                              jnp.float32).astype(dtype)
        if op == "sddmm":   # x.T @ g sampled, against x @ W of equal FLOPs
          w = (w, jax.random.normal(jax.random.key(2), (batch, cols),
                                    jnp.float32).astype(dtype))
        return _timing.against_dense(fns, w, x, dense, None)["seconds"]
      x = jax.random.normal(jax.random.key(1), (batch, cols),
                            jnp.float32).astype(dtype)
      return _timing.against_dense(fns, w, x, dense.T, None)["seconds"]

  return measure


def _timed_call(x, w, *, op, impl, smem_budget):
  """One call as :mod:`pallas_kernels._timing` chains it (rows of ``x``
  feed back); ``A @ x`` is timed as ``(A @ x.T).T``, the SDDMM of ``x`` and
  ``g`` (``w`` is ``(block list, g)``) with the sum of its blocks fed back."""
  if op == "sddmm":
    from pallas_kernels.block_sparse.block_list_sddmm import block_list_sddmm  # pylint: disable=g-import-not-at-top
    out = block_list_sddmm(x, w[1], w[0], implementation=impl,
                           smem_budget=smem_budget)
    return jnp.broadcast_to(out.sum(dtype=jnp.float32), (x.shape[0], 1))
  if op == "dsd":
    return block_list_matmul(x, w, implementation=impl,
                             smem_budget=smem_budget)
  return block_list_sparse_dense_matmul(w, x.T, implementation=impl,
                                        smem_budget=smem_budget).T


def choose_implementation(w: BlockList, op: str = "dsd",
                          implementation: str | None = None, *,
                          platform: str | None = None, batch: int = 1,
                          dtype: Any = None, name: str | None = None,
                          autotune: bool | None = None,
                          smem_budget: int = TPU_SMEM_BUDGET_BYTES) -> Choice:
  """Returns the implementation a block-list product uses, and why.

  The automatic choice is measured (:mod:`pallas_kernels.dispatch`, op
  ``block_list_dsd``, ``block_list_sdd`` or ``block_list_sddmm``, pattern
  :func:`pattern`): a
  kernel runs only where a measurement on this device kind found it faster
  than XLA dense; otherwise, and always on CPU, the dense XLA path runs.

  Args:
    w: the block list.
    op: ``"dsd"`` (:func:`block_list_matmul`), ``"sdd"``
      (:func:`block_list_sparse_dense_matmul`) or ``"sddmm"`` (the weight
      gradient, :func:`~pallas_kernels.block_sparse.block_list_sddmm.block_list_sddmm`).
    implementation: ``None`` (automatic) or one of :data:`IMPLEMENTATIONS`.
    platform: backend to decide for; defaults to ``jax.default_backend()``.
    batch: rows of the dense operand for ``"dsd"``, its columns for
      ``"sdd"``, the summed length for ``"sddmm"`` (part of the measured
      case).
    dtype: the dense operand's dtype, for autotuning (default: ``w``'s).
    name: layer name used in error messages.
    autotune: measure at first use (overrides ``PALLAS_KERNELS_AUTOTUNE``).
    smem_budget: TPU only: scalar-memory bytes the metadata may use.

  >>> from pallas_kernels.formats import block_list_from_mask
  >>> w = block_list_from_mask(jnp.ones((256, 256)), jnp.eye(2, dtype=bool), (128, 128))
  >>> choose_implementation(w, platform="cpu").implementation
  'xla'
  >>> choose_implementation(w, implementation="pallas", platform="tpu")
  Choice(implementation='tpu', reason='requested', source='requested', interpret=False)
  >>> choose_implementation(w, implementation="mosaic", name="fc1")
  Traceback (most recent call last):
  ...
  ValueError: layer 'fc1': implementation for op 'block_list_dsd' must be None, 'xla', 'pallas' or one of ['tpu', 'triton', 'xla_blocks'], got 'mosaic' (requested).
  """
  if op not in OPS:
    raise ValueError(f"{_where(name)}op must be one of {tuple(OPS)}, got "
                     f"{op!r}.")
  platform = platform or _compat.backend()
  kernels, why = dict(KERNELS), []
  if implementation is None and dispatch.forced() is None:
    kernels, why = _suitable(w, smem_budget)
  batch = max(int(batch), 1)
  try:
    choice = dispatch.choose(
        op=OPS[op], candidates=kernels, pattern=pattern(w),
        dtype=w.values.dtype, shape=tuple(w.shape), batch=batch,
        implementation=implementation, platform=platform,
        measure=_measure(w, op, batch,
                         w.values.dtype if dtype is None else dtype,
                         smem_budget),
        autotune=autotune)
  except ValueError as e:
    raise ValueError(f"{_where(name)}{e}") from None
  if choice.implementation == "xla_blocks":  # XLA: never interpreted
    choice = choice._replace(interpret=False)
  if why and choice.source == "default":
    choice = choice._replace(reason=choice.reason + "; " + "; ".join(why))
  return choice


def _configure(bl, op, dense_dtype, batch, implementation, interpret, name,
               split, stages, smem_budget) -> Cfg:
  """The :class:`Cfg` of one product: its implementation, checked."""
  choice = choose_implementation(bl, op, implementation, batch=batch,
                                 dtype=dense_dtype, name=name,
                                 smem_budget=smem_budget)
  impl = choice.implementation
  interp = choice.interpret if interpret is None else interpret
  if impl == "triton" and not _compat.HAS_TRITON:
    raise RuntimeError(f"{_where(name)}this jaxlib has no Pallas Triton "
                       "lowering; use implementation='xla'.")
  reason = unsupported(bl, impl, interp, smem_budget)
  if reason is not None:
    raise ValueError(f"{_where(name)}{reason}.")
  odt = jnp.result_type(dense_dtype, bl.values.dtype)
  return Cfg(op, impl, interp, odt, split, stages, name,
             _weight_gradient(bl, op, choice, batch, dense_dtype, name,
                              smem_budget))


def _weight_gradient(bl, op, choice, batch, dense_dtype, name, smem_budget):
  """The SDDMM implementation of a product's weight gradient.

  A requested or forced kernel computes it too; an automatic choice asks
  the dispatch (op ``block_list_sddmm``), which picks a kernel only where one
  was measured faster, else the XLA gather-matmul.
  """
  if op == "sddmm":
    return "xla"
  if choice.source in ("requested", "forced"):
    return choice.implementation if choice.implementation in (
        "triton", "tpu") else "xla"
  return choose_implementation(bl, "sddmm", None, batch=batch,
                               dtype=dense_dtype, name=name,
                               smem_budget=smem_budget).implementation


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
    implementation: ``None`` (chosen by measurement, see
      :func:`choose_implementation`) or one of :data:`IMPLEMENTATIONS`.
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
  lead = x.shape[:-1]
  x2 = x.reshape(-1, w.shape[0])
  cfg = _configure(w, "dsd", x.dtype, x2.shape[0], implementation, interpret,
                   name, split, stages, smem_budget)
  out = product(x2, w.values, _struct(w), cfg)
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
  cfg = _configure(a, "sdd", x.dtype, x.shape[1], implementation, interpret,
                   name, split, stages, smem_budget)
  return product(x, a.values, _struct(a), cfg)
