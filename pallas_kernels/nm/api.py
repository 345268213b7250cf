"""``nm_matmul``: ``x @ W`` with ``W`` N:M compressed; picks the implementation.

Implementations:

* ``"pallas_tpu"`` -- Mosaic TPU kernel (:mod:`.kernel_tpu`).
* ``"pallas_gpu"`` -- Triton kernel (:mod:`.kernel_gpu`).
* ``"xla"`` -- ``jnp.dot`` on the expanded weight (always available).

``implementation=None`` chooses by backend, layout and batch:
:func:`choose_implementation` returns the choice and the reason. On CPU the
default is XLA; a Pallas kernel requested on CPU runs with ``interpret=True``.
The kernels win by bandwidth only, so above the batch where the compressed
weight stops dominating the traffic (``B* = (bpe/16) * FLOP/byte``, with
``bpe`` the compressed bits per weight and ``FLOP/byte`` the device's ridge
point) the dense path is chosen.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from pallas_kernels import _compat
from pallas_kernels.nm import kernel_gpu
from pallas_kernels.nm import kernel_tpu
from pallas_kernels.nm import reference
from pallas_kernels.formats import decompress_nm
from pallas_kernels.formats import nm_values_like
from pallas_kernels.formats import NMCompressed

__all__ = ["nm_matmul", "choose_implementation", "Choice", "IMPLEMENTATIONS",
           "batch_crossover"]

IMPLEMENTATIONS = ("xla", "pallas_tpu", "pallas_gpu", "pallas")
# Ridge points (dense bf16 FLOP/s over HBM bytes/s): H100 SXM ~989T/3.35T,
# TPU v5e ~197T/0.82T.
_RIDGE = {"gpu": 295.0, "tpu": 240.0}


class Choice(NamedTuple):
  """Which implementation runs and why."""
  implementation: str
  reason: str
  interpret: bool


def batch_crossover(w: NMCompressed, platform: str = "gpu") -> float:
  """Batch above which the kernel stops being memory bound.

  >>> from pallas_kernels.formats import compress_nm
  >>> c = compress_nm(jnp.ones((4, 1)), jnp.array([[1], [1], [0], [0]], bool), 2, 4)
  >>> round(batch_crossover(c, "gpu"))
  166
  """
  bpe = 16.0 * w.n / w.m + w.n / w.m * w.bits
  return bpe / 16.0 * _RIDGE.get(platform, _RIDGE["gpu"])


def _check(x, w):
  if not isinstance(w, NMCompressed):
    raise TypeError(f"w must be an NMCompressed, got {type(w).__name__}.")
  if x.ndim < 1 or x.shape[-1] != w.shape[0]:
    raise ValueError(f"x last axis ({x.shape[-1:]}) must equal K={w.shape[0]} "
                     f"of w {w.shape}.")


def choose_implementation(x, w: NMCompressed, implementation: str | None = None,
                          *, platform: str | None = None) -> Choice:
  """Returns the implementation ``nm_matmul`` uses for these operands, and why.

  Args:
    x: activations (or a ``jax.ShapeDtypeStruct``) with last axis ``K``.
    w: the compressed weight.
    implementation: ``None`` (automatic) or one of :data:`IMPLEMENTATIONS`.
    platform: backend to decide for; defaults to ``jax.default_backend()``.

  >>> from pallas_kernels.formats import compress_nm
  >>> c = compress_nm(jnp.ones((4, 1)), jnp.array([[1], [1], [0], [0]], bool), 2, 4)
  >>> choose_implementation(jnp.ones((1, 4)), c, platform="cpu").implementation
  'xla'
  >>> choose_implementation(jnp.ones((1, 4)), c, "pallas", platform="cpu")
  Choice(implementation='pallas_tpu', reason='requested', interpret=True)
  """
  platform = platform or _compat.backend()
  if implementation is not None and implementation not in IMPLEMENTATIONS:
    raise ValueError(f"implementation must be None or one of "
                     f"{IMPLEMENTATIONS}, got {implementation!r}.")
  if implementation == "xla":
    return Choice("xla", "requested", False)
  if implementation is not None:
    impl = implementation
    if impl == "pallas":
      impl = "pallas_gpu" if platform == "gpu" else "pallas_tpu"
    native = {"pallas_tpu": "tpu", "pallas_gpu": "gpu"}[impl]
    return Choice(impl, "requested", platform != native)
  batch = 1
  for d in x.shape[:-1]:
    batch *= d
  if platform not in ("tpu", "gpu"):
    return Choice("xla", f"backend {platform!r} has no Pallas kernel "
                  "(interpret mode is for testing); pass "
                  "implementation='pallas' to force", False)
  cross = batch_crossover(w, platform)
  if batch > cross:
    return Choice("xla", f"batch {batch} > {cross:.0f}: past the memory-bound "
                  f"window of {w.n}:{w.m}, dense matmul is faster", False)
  if platform == "tpu" and w.tile_groups % 256:
    return Choice("xla", f"tile_groups={w.tile_groups} is not a multiple of "
                  "256 (TPU tiling of the index planes)", False)
  impl = "pallas_tpu" if platform == "tpu" else "pallas_gpu"
  return Choice(impl, f"batch {batch} <= {cross:.0f}: memory bound, compressed "
                "weights read", False)


def _round_up(a, b):
  return -(-a // b) * b


def _pad_cols(w: NMCompressed, cols: int) -> NMCompressed:
  extra = cols - w.shape[1]
  if not extra:
    return w
  return NMCompressed(values=jnp.pad(w.values, ((0, 0), (0, extra))),
                      indices=jnp.pad(w.indices, ((0, 0), (0, extra))),
                      n=w.n, m=w.m, shape=(w.shape[0], cols),
                      tile_groups=w.tile_groups)


def _run_kernel(x2, w, impl, interpret, odt):
  b = x2.shape[0]
  if impl == "pallas_gpu":
    tb = min(64, max(16, 1 << (b - 1).bit_length()))
  else:
    tb = min(256, _round_up(b, 16))
  tn = 128
  bp = _round_up(b, tb)
  wp = _pad_cols(w, _round_up(w.shape[1], tn))
  xp = reference.permute_activation(x2, w)
  xp = jnp.pad(xp, ((0, bp - b), (0, 0)))
  fn = kernel_gpu.nm_matmul_gpu if impl == "pallas_gpu" else \
      kernel_tpu.nm_matmul_tpu
  out = fn(xp, wp, tb=tb, tn=tn, out_dtype=odt, interpret=interpret)
  return out[:b, :w.shape[1]]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _pallas_mm(x2, values, indices, meta, impl, interpret):
  w = NMCompressed(values, indices, *meta)
  return _run_kernel(x2, w, impl, interpret, reference.out_dtype(x2, w))


def _fwd(x2, values, indices, meta, impl, interpret):
  return _pallas_mm(x2, values, indices, meta, impl, interpret), (x2, values,
                                                                  indices)


def _bwd(meta, impl, interpret, res, g):
  del impl, interpret
  x2, values, indices = res
  w = NMCompressed(values, indices, *meta)
  dense = decompress_nm(w)
  hi = jax.lax.Precision.HIGHEST
  dx = jnp.dot(g, dense.T, preferred_element_type=jnp.float32, precision=hi)
  dw = jnp.dot(x2.T, g, preferred_element_type=jnp.float32, precision=hi)
  dvalues = nm_values_like(w, dw).astype(values.dtype)
  return dx.astype(x2.dtype), dvalues, None


_pallas_mm.defvjp(_fwd, _bwd)


def nm_matmul(x, w: NMCompressed, *, implementation: str | None = None,
              interpret: bool | None = None) -> jax.Array:
  """Computes ``x @ W`` where ``W`` (``(K, N)``) is N:M compressed along K.

  Args:
    x: ``(..., K)`` activations, bf16 or f32.
    w: :class:`~pallas_kernels.formats.NMCompressed` weight (any ``m <= 16``).
    implementation: ``None`` to choose automatically (see
      :func:`choose_implementation`), ``"xla"``, ``"pallas"``,
      ``"pallas_tpu"`` or ``"pallas_gpu"``.
    interpret: run a Pallas kernel in interpret mode (a bool, or
      ``pltpu.InterpretParams`` for TPU semantics); defaults to True when the
      kernel's platform is not the current backend.

  Returns:
    ``(..., N)`` in the promoted dtype, accumulated in f32. Differentiable
    in ``x`` and ``w.values``.

  The kernels tile ``N`` by 128; another ``N`` pads the compressed weight on
  every call (a copy), so prefer ``N % 128 == 0``.

  >>> from pallas_kernels.formats import compress_nm
  >>> w = jnp.arange(8.0).reshape(4, 2)
  >>> mask = jnp.array([[1, 0], [0, 1], [1, 0], [0, 1]], bool)
  >>> c = compress_nm(w, mask, 2, 4)
  >>> nm_matmul(jnp.ones((1, 4)), c)
  Array([[ 4., 10.]], dtype=float32)
  >>> nm_matmul(jnp.ones((1, 4)), c, implementation="pallas")
  Array([[ 4., 10.]], dtype=float32)
  """
  x = jnp.asarray(x)
  _check(x, w)
  choice = choose_implementation(x, w, implementation)
  lead = x.shape[:-1]
  x2 = x.reshape(-1, w.shape[0])
  if choice.implementation == "xla":
    out = jnp.dot(x2, decompress_nm(w), preferred_element_type=jnp.float32)
    out = out.astype(reference.out_dtype(x2, w))
  else:
    interp = choice.interpret if interpret is None else interpret
    meta = (w.n, w.m, tuple(w.shape), w.tile_groups)
    out = _pallas_mm(x2, w.values, w.indices, meta, choice.implementation,
                     interp)
  return out.reshape(*lead, w.shape[1])
