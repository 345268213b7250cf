"""``nm_matmul``: ``x @ W`` with ``W`` N:M compressed; picks the implementation.

Implementations (:data:`KERNELS` maps each name to its kernel, platform and
layout check, for a dispatch to choose among):

* ``"tpu"`` -- Mosaic TPU kernel (:mod:`.kernel_tpu`).
* ``"triton"`` -- split-K expand-then-MMA kernel on the Triton lowering
  (:mod:`.kernel_gpu`).
* ``"triton_gather"`` -- gather-and-FMA kernel on CUDA cores for 1:8 and 1:16
  at small batch (:mod:`.kernel_gpu_gather`).
* ``"xla"`` -- ``jnp.dot`` on the expanded weight (always available).

``"pallas_tpu"`` and ``"pallas_gpu"`` are aliases of ``"tpu"`` and
``"triton"``; ``"pallas"`` means the backend's default kernel. Every kernel
takes the activation as it comes and the weight as ``compress_nm`` stored it:
nothing is padded or permuted per call.

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
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from pallas_kernels import _compat
from pallas_kernels.nm import kernel_gpu
from pallas_kernels.nm import kernel_gpu_gather
from pallas_kernels.nm import kernel_tpu
from pallas_kernels.nm import reference
from pallas_kernels.formats import decompress_nm
from pallas_kernels.formats import nm_values_like
from pallas_kernels.formats import NMCompressed

__all__ = ["nm_matmul", "choose_implementation", "Choice", "IMPLEMENTATIONS",
           "batch_crossover", "KERNELS", "Kernel", "kernel_for"]


class Kernel(NamedTuple):
  """One Pallas implementation: its function, native platform and limits.

  ``fn(x2, w, *, out_dtype, interpret)`` computes ``(B, N)`` from ``(B, K)``;
  ``unsupported(w)`` returns ``None`` or why the real (non-interpreted)
  lowering cannot take this layout.
  """
  fn: Callable[..., jax.Array]
  platform: str
  unsupported: Callable[[NMCompressed], str | None]


def _any_layout(w):
  del w
  return None


def _tpu_layout(w):
  if w.tile_groups % kernel_tpu.LOWERING_TILE_GROUPS:
    return (f"tile_groups={w.tile_groups} is not a multiple of "
            f"{kernel_tpu.LOWERING_TILE_GROUPS} (TPU tiling of the index "
            "planes)")
  return None


KERNELS: dict[str, Kernel] = {
    "tpu": Kernel(kernel_tpu.nm_matmul_tpu, "tpu", _tpu_layout),
    "triton": Kernel(kernel_gpu.nm_matmul_gpu, "gpu", _any_layout),
    "triton_gather": Kernel(kernel_gpu_gather.nm_matmul_gpu_gather, "gpu",
                            _any_layout),
}
_ALIASES = {"pallas_tpu": "tpu", "pallas_gpu": "triton"}

IMPLEMENTATIONS = ("xla", *KERNELS, *_ALIASES, "pallas")


def kernel_for(name: str) -> Kernel:
  """The :class:`Kernel` registered under ``name`` (aliases resolved).

  >>> kernel_for("pallas_gpu").platform
  'gpu'
  """
  return KERNELS[_ALIASES.get(name, name)]


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


_DTYPES = tuple(jnp.dtype(d) for d in (jnp.float32, jnp.bfloat16, jnp.float16))


def _check(x, w):
  if not isinstance(w, NMCompressed):
    raise TypeError(f"w must be an NMCompressed, got {type(w).__name__}.")
  if x.ndim < 1 or x.shape[-1] != w.shape[0]:
    raise ValueError(f"x last axis ({x.shape[-1:]}) must equal K={w.shape[0]} "
                     f"of w {w.shape}.")
  for name, dt in (("x", x.dtype), ("w.values", w.values.dtype)):
    if jnp.dtype(dt) not in _DTYPES:
      raise TypeError(f"{name} dtype {jnp.dtype(dt).name} is not supported "
                      f"(x {x.shape}, w {w.shape}); use one of "
                      f"{sorted(jnp.dtype(d).name for d in _DTYPES)}.")


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
    native = kernel_for(impl).platform
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


def _run_kernel(x2, w, impl, interpret, odt):
  return kernel_for(impl).fn(x2, w, out_dtype=odt, interpret=interpret)


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
      :func:`choose_implementation`), ``"xla"``, ``"pallas"`` or a name in
      :data:`KERNELS` (``"tpu"``, ``"triton"``, ``"triton_gather"``, ...).
    interpret: run a Pallas kernel in interpret mode (a bool, or
      ``pltpu.InterpretParams`` for TPU semantics); defaults to True when the
      kernel's platform is not the current backend.

  Returns:
    ``(..., N)`` in the promoted dtype, accumulated in f32. Differentiable
    in ``x`` and ``w.values``.

  Any ``B``, ``K`` and ``N`` run without per-call padding: the kernels mask
  ragged edges.

  >>> from pallas_kernels.formats import compress_nm
  >>> w = jnp.arange(8.0).reshape(4, 2)
  >>> mask = jnp.array([[1, 0], [0, 1], [1, 0], [0, 1]], bool)
  >>> c = compress_nm(w, mask, 2, 4)
  >>> nm_matmul(jnp.ones((1, 4)), c)
  Array([[ 4., 10.]], dtype=float32)
  >>> nm_matmul(jnp.ones((1, 4)), c, implementation="pallas")
  Array([[ 4., 10.]], dtype=float32)
  >>> nm_matmul(jnp.ones((1, 4)), c, implementation="triton_gather")
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
