"""Block-sparse products with an implementation choice and XLA fallback.

* :func:`block_sparse_matmul` -- ``x @ W``: dense activation, sparse weight
  (``W`` grouped by block column, ``major="col"``).
* :func:`sparse_dense_matmul` -- ``A @ X``: sparse matrix, dense operand
  (``A`` grouped by block row, ``major="row"``).

Both accept :class:`~pallas_kernels.formats.BSR` or
:class:`~pallas_kernels.formats.PaddedBlockSparse`. A BSR input is padded to the
full minor extent (always static, so it works under ``jit``); padding steps
cost neither DMA nor MXU time in the kernels. Implementations: ``"xla"``
(``jnp.dot`` on the expanded matrix), ``"pallas_tpu"`` (Mosaic TPU, scalar
prefetch), ``"pallas_gpu"`` (Triton); see :func:`choose_implementation`.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from pallas_kernels import _compat
from pallas_kernels import dispatch
from pallas_kernels.block_sparse import kernel_gpu
from pallas_kernels.block_sparse import kernel_tpu
from pallas_kernels.formats import block_values_like
from pallas_kernels.formats import BSR
from pallas_kernels.formats import bsr_to_padded
from pallas_kernels.formats import decompress_block
from pallas_kernels.formats import PaddedBlockSparse
from pallas_kernels.dispatch import Choice

__all__ = ["block_sparse_matmul", "sparse_dense_matmul",
           "choose_implementation", "pattern", "Choice", "IMPLEMENTATIONS",
           "KERNELS", "OPS"]

# Pallas implementations and the platform each runs natively on.
KERNELS = {"pallas_tpu": "tpu", "pallas_gpu": "gpu"}
IMPLEMENTATIONS = ("xla", *KERNELS, "pallas")
# The dispatch op name of each product.
OPS = {"dsd": "block_dsd", "sdd": "block_sdd"}
_DTYPES = ("bfloat16", "float16", "float32")
_HI = jax.lax.Precision.HIGHEST
# Above this stored-block density skipping work no longer pays.
_MAX_DENSITY = 0.5


def _as_padded(w) -> PaddedBlockSparse:
  if isinstance(w, PaddedBlockSparse):
    return w
  if isinstance(w, BSR):
    grid = w.grid
    num_minor = grid[1] if w.major == "row" else grid[0]
    return bsr_to_padded(w, width=num_minor)
  raise TypeError(f"expected BSR or PaddedBlockSparse, got {type(w).__name__}.")


def _stored_density(w) -> float:
  grid = w.grid
  total = grid[0] * grid[1]
  if isinstance(w, PaddedBlockSparse):
    return w.indices.size / total
  return w.values.shape[0] / total


def pattern(w: BSR | PaddedBlockSparse) -> str:
  """The dispatch pattern of a BSR / padded operand: blocks and stored density.

  >>> from pallas_kernels.formats import compress_padded_block
  >>> pattern(compress_padded_block(jnp.ones((64, 64)), jnp.eye(4, dtype=bool), (16, 16)))
  'b16x16/d0.25'
  """
  bh, bw = w.block_shape
  return f"b{bh}x{bw}/d{_stored_density(w):.2f}"


def _pow2(v):
  return v >= 16 and v & (v - 1) == 0


def _where(name):
  return f" (layer {name!r})" if name else ""


def _suitable(w, op: str, platform: str) -> tuple[dict[str, str], list[str]]:
  """The kernels that can run this operand, and why others cannot."""
  want = "col" if op == "dsd" else "row"
  if w.major != want:
    return {}, [f"sparse operand has major={w.major!r}; the {op} kernel needs "
                f"major={want!r}"]
  density = _stored_density(w)
  if density > _MAX_DENSITY:
    return {}, [f"stored block density {density:.2f} > {_MAX_DENSITY}: too "
                "dense to skip work"]
  bh, bw = w.block_shape
  out, why = {}, []
  if _pow2(bh) and _pow2(bw):
    out["pallas_gpu"] = "gpu"
  else:
    why.append(f"blocks {(bh, bw)} are not powers of two >= 16 (Triton tiles)")
  lane_ok = (bh % 128 == 0 and bw % 128 == 0) if op == "dsd" else (
      bw % 128 == 0 and bh % 16 == 0)
  if lane_ok:
    out["pallas_tpu"] = "tpu"
  else:
    why.append(f"blocks {(bh, bw)} do not meet the TPU (8, 128) tiling for "
               "this kernel")
  del platform
  return out, why


def _measure(w, op: str, batch: int, dtype):
  """A ``measure`` callable for the dispatch's autotune.

  Times the op on a random operand with the same shape, blocks, major and
  stored block density as ``w`` (``w`` itself may be traced).
  """
  def measure(impls):
    # pylint: disable=g-import-not-at-top
    import numpy as np
    from pallas_kernels import _timing
    from pallas_kernels.formats import compress_padded_block
    with jax.ensure_compile_time_eval():
      rows, cols = w.shape
      bh, bw = w.block_shape
      grid = (rows // bh, cols // bw)
      keep = max(1, round(_stored_density(w) * grid[0] * grid[1]))
      order = np.random.default_rng(0).permutation(grid[0] * grid[1])
      bmask = np.zeros(grid[0] * grid[1], bool)
      bmask[order[:keep]] = True
      dense = jax.random.normal(jax.random.key(0), (rows, cols),
                                jnp.float32).astype(w.values.dtype)
      p = compress_padded_block(dense, bmask.reshape(grid), (bh, bw),
                                major=w.major)
      if op == "dsd":
        x = jax.random.normal(jax.random.key(1), (batch, rows),
                              jnp.float32).astype(dtype)
        fns = {i: functools.partial(_dsd_call, impl=i) for i in impls}
        return _timing.against_dense(fns, p, x, dense, None)["seconds"]
      x = jax.random.normal(jax.random.key(1), (cols, batch),
                            jnp.float32).astype(dtype)
      # A @ x timed as (x.T @ A.T).T so the chain feeds rows back.
      fns = {i: functools.partial(_sdd_call_t, impl=i) for i in impls}
      return _timing.against_dense(fns, p, x.T, dense.T, None)["seconds"]

  return measure


def _dsd_call(x, p, impl):
  return block_sparse_matmul(x, p, implementation=impl)


def _sdd_call_t(xt, p, impl):
  return sparse_dense_matmul(p, xt.T, implementation=impl).T


def choose_implementation(w, op: str = "dsd",
                          implementation: str | None = None, *,
                          platform: str | None = None, batch: int = 1,
                          name: str | None = None, dtype=None,
                          autotune: bool | None = None) -> Choice:
  """Returns the implementation a block-sparse product uses, and why.

  The automatic choice is measured (:mod:`pallas_kernels.dispatch`): a kernel
  runs only where a measurement on this device kind found it faster than XLA
  dense; otherwise, and always on CPU, the XLA path runs.

  Args:
    w: the sparse operand (BSR or padded).
    op: ``"dsd"`` (dense x sparse, :func:`block_sparse_matmul`) or ``"sdd"``
      (sparse x dense, :func:`sparse_dense_matmul`).
    implementation: ``None`` (automatic) or one of :data:`IMPLEMENTATIONS`.
    platform: backend to decide for; defaults to ``jax.default_backend()``.
    batch: rows of the dense operand for ``"dsd"``, its columns for
      ``"sdd"`` (part of the measured case).
    name: the layer's path, used in error messages.
    dtype: the dense operand's dtype, for autotuning (default: the sparse
      values' dtype).
    autotune: measure at first use (overrides ``PALLAS_KERNELS_AUTOTUNE``).

  >>> from pallas_kernels.formats import compress_bsr
  >>> w = compress_bsr(jnp.ones((256, 256)), jnp.eye(2, dtype=bool), (128, 128), major="col")
  >>> choose_implementation(w, platform="cpu").implementation
  'xla'
  >>> choose_implementation(w, implementation="pallas", platform="tpu")
  Choice(implementation='pallas_tpu', reason='requested', source='requested', interpret=False)
  """
  if op not in ("dsd", "sdd"):
    raise ValueError(f"op must be 'dsd' or 'sdd', got {op!r}.")
  platform = platform or _compat.backend()
  want = "col" if op == "dsd" else "row"
  if implementation not in (None, "xla") and w.major != want:
    raise ValueError(
        f"the {op} Pallas kernel needs the sparse operand{_where(name)} "
        f"compressed with major={want!r}, got major={w.major!r}; recompress it "
        "or use implementation='xla'.")
  kernels = KERNELS
  why: list[str] = []
  if implementation is None:
    kernels, why = _suitable(w, op, platform)
  choice = dispatch.choose(
      op=OPS[op], candidates=kernels, pattern=pattern(w), dtype=w.values.dtype,
      shape=tuple(w.shape), batch=max(int(batch), 1),
      implementation=implementation, platform=platform,
      measure=_measure(w, op, max(int(batch), 1), dtype or w.values.dtype),
      autotune=autotune)
  if why and choice.source == "default":
    choice = choice._replace(reason=choice.reason + "; " + "; ".join(why))
  return choice


def _check_dtype(dt, what, shape, name):
  if jnp.dtype(dt).name not in _DTYPES:
    raise TypeError(f"{what}{_where(name)} has dtype {jnp.dtype(dt).name}; "
                    f"block-sparse products support {_DTYPES} (sparse operand "
                    f"of shape {tuple(shape)}).")


def _round_up(a, b):
  return -(-a // b) * b


def _meta(p):
  return (tuple(p.shape), tuple(p.block_shape), p.major)


def _padded(values, indices, counts, meta):
  shape, block_shape, major = meta
  return PaddedBlockSparse(values, indices, counts, shape, block_shape, major)


def _run_dsd(x2, p, impl, interpret, odt):
  b = x2.shape[0]
  if impl == "pallas_gpu":
    tb = min(64, max(16, 1 << (b - 1).bit_length()))
  else:
    tb = min(256, _round_up(b, 16))
  bp = _round_up(b, tb)
  xp = jnp.pad(x2, ((0, bp - b), (0, 0)))
  fn = kernel_gpu.dsd_gpu if impl == "pallas_gpu" else kernel_tpu.dsd_tpu
  return fn(xp, p, tb=tb, out_dtype=odt, interpret=interpret)[:b]


def _run_sdd(p, x, impl, interpret, odt):
  n = x.shape[1]
  tn = 128
  np_ = _round_up(n, tn)
  xp = jnp.pad(x, ((0, 0), (0, np_ - n)))
  fn = kernel_gpu.sdd_gpu if impl == "pallas_gpu" else kernel_tpu.sdd_tpu
  return fn(p, xp, tn=tn, out_dtype=odt, interpret=interpret)[:, :n]


def _hi_dot(a, b):
  return jnp.dot(a, b, preferred_element_type=jnp.float32, precision=_HI)


def _padded_product(name, run, grads):
  """The differentiable product ``name(x, values, indices, counts, meta,
  impl, interpret, odt)`` of a dense operand and a padded layout.

  ``run(x, p, impl, interpret, odt)`` is the forward kernel; the backward is
  dense: ``grads(x, decompress(p), g)`` returns the f32 ``(dx, d_dense)``,
  ``d_dense`` restricted to the stored blocks.
  """

  def product(x, values, indices, counts, meta, impl, interpret, odt):
    p = _padded(values, indices, counts, meta)
    return run(x, p, impl, interpret, odt)

  def fwd(x, values, indices, counts, meta, impl, interpret, odt):
    out = f(x, values, indices, counts, meta, impl, interpret, odt)
    return out, (x, values, indices, counts)

  def bwd(meta, impl, interpret, odt, res, g):
    del impl, interpret, odt
    x, values, indices, counts = res
    p = _padded(values, indices, counts, meta)
    dx, dd = grads(x, decompress_block(p), g)
    dvalues = block_values_like(p, dd).astype(values.dtype)
    return dx.astype(x.dtype), dvalues, None, None

  product.__name__, fwd.__name__, bwd.__name__ = (
      name, f"{name}_fwd", f"{name}_bwd")
  f = functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))(product)
  f.defvjp(fwd, bwd)
  return f


_dsd = _padded_product(
    "_dsd", _run_dsd,
    lambda x2, dense, g: (_hi_dot(g, dense.T), _hi_dot(x2.T, g)))
_sdd = _padded_product(
    "_sdd", lambda x, p, *rest: _run_sdd(p, x, *rest),
    lambda x, dense, g: (_hi_dot(dense.T, g), _hi_dot(g, x.T)))


def block_sparse_matmul(x, w, *, implementation: str | None = None,
                        interpret: bool | None = None,
                        name: str | None = None) -> jax.Array:
  """Computes ``x @ W`` for dense ``x`` and block-sparse ``W`` ``(K, N)``.

  Args:
    x: ``(..., K)`` activations.
    w: :class:`~pallas_kernels.formats.BSR` or
      :class:`~pallas_kernels.formats.PaddedBlockSparse`; the Pallas kernels need
      ``major="col"`` (any major works with ``"xla"``).
    implementation: ``None`` (automatic), ``"xla"``, ``"pallas"``,
      ``"pallas_tpu"`` or ``"pallas_gpu"``.
    interpret: run a Pallas kernel in interpret mode (a bool, or
      ``pltpu.InterpretParams`` for TPU semantics); defaults to True when the
      kernel's platform is not the current backend.
    name: the layer's path, named in error messages.

  Returns:
    ``(..., N)`` in the promoted dtype, accumulated in f32.

  >>> from pallas_kernels.formats import compress_padded_block
  >>> w = compress_padded_block(jnp.ones((4, 4)), jnp.eye(2, dtype=bool), (2, 2), major="col")
  >>> block_sparse_matmul(jnp.ones((1, 4)), w, implementation="pallas")
  Array([[2., 2., 2., 2.]], dtype=float32)
  """
  x = jnp.asarray(x)
  if not isinstance(w, (BSR, PaddedBlockSparse)):
    raise TypeError(f"w{_where(name)} must be BSR or PaddedBlockSparse, got "
                    f"{type(w).__name__}.")
  if x.ndim < 1 or x.shape[-1] != w.shape[0]:
    raise ValueError(f"x{_where(name)} has shape {x.shape}: its last axis "
                     f"must equal K={w.shape[0]} of the block-sparse weight of "
                     f"shape {tuple(w.shape)}.")
  _check_dtype(x.dtype, "x", w.shape, name)
  _check_dtype(w.values.dtype, "weight values", w.shape, name)
  batch = 1
  for d in x.shape[:-1]:
    batch *= d
  choice = choose_implementation(w, "dsd", implementation, batch=batch,
                                 name=name, dtype=x.dtype)
  odt = jnp.result_type(x.dtype, w.values.dtype)
  lead = x.shape[:-1]
  x2 = x.reshape(-1, w.shape[0])
  if choice.implementation == "xla":
    out = jnp.dot(x2, decompress_block(w),
                  preferred_element_type=jnp.float32).astype(odt)
  else:
    p = _as_padded(w)
    interp = choice.interpret if interpret is None else interpret
    out = _dsd(x2, p.values, p.indices, p.counts, _meta(p),
               choice.implementation, interp, odt)
  return out.reshape(*lead, w.shape[1])


def sparse_dense_matmul(a, x, *, implementation: str | None = None,
                        interpret: bool | None = None,
                        name: str | None = None) -> jax.Array:
  """Computes ``A @ x`` for block-sparse ``A`` ``(M, K)`` and dense ``x``.

  Args:
    a: :class:`~pallas_kernels.formats.BSR` or
      :class:`~pallas_kernels.formats.PaddedBlockSparse`; the Pallas kernels need
      ``major="row"``.
    x: ``(K, N)`` dense matrix.
    implementation: as in :func:`block_sparse_matmul`.
    interpret: as in :func:`block_sparse_matmul`.
    name: the layer's path, named in error messages.

  Returns:
    ``(M, N)`` in the promoted dtype, accumulated in f32.

  >>> from pallas_kernels.formats import compress_bsr
  >>> a = compress_bsr(jnp.ones((4, 4)), jnp.array([[True, False], [False, False]]), (2, 2))
  >>> sparse_dense_matmul(a, jnp.ones((4, 1)), implementation="pallas")[:, 0]
  Array([2., 2., 0., 0.], dtype=float32)
  """
  x = jnp.asarray(x)
  if not isinstance(a, (BSR, PaddedBlockSparse)):
    raise TypeError(f"a{_where(name)} must be BSR or PaddedBlockSparse, got "
                    f"{type(a).__name__}.")
  if x.ndim != 2 or x.shape[0] != a.shape[1]:
    raise ValueError(f"x{_where(name)} must be 2-D with x.shape[0] == "
                     f"K={a.shape[1]} of the block-sparse a of shape "
                     f"{tuple(a.shape)}, got {x.shape}.")
  _check_dtype(x.dtype, "x", a.shape, name)
  _check_dtype(a.values.dtype, "sparse values", a.shape, name)
  choice = choose_implementation(a, "sdd", implementation, batch=x.shape[1],
                                 name=name, dtype=x.dtype)
  odt = jnp.result_type(x.dtype, a.values.dtype)
  if choice.implementation == "xla":
    return jnp.dot(decompress_block(a), x,
                   preferred_element_type=jnp.float32).astype(odt)
  p = _as_padded(a)
  interp = choice.interpret if interpret is None else interpret
  return _sdd(x, p.values, p.indices, p.counts, _meta(p),
              choice.implementation, interp, odt)
