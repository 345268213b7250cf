"""``nm_matmul``: ``x @ W`` with ``W`` N:M compressed; picks the implementation.

Implementations (:data:`KERNELS` maps each name to its kernel, platform and
layout check, for a dispatch to choose among):

* ``"tpu"`` -- Mosaic TPU kernel (``pallas_kernels.nm.kernel_tpu``).
* ``"triton"`` -- split-K expand-then-MMA kernel on the Triton lowering
  (``pallas_kernels.nm.kernel_gpu``).
* ``"triton_gather"`` -- gather-and-FMA kernel on CUDA cores for 1:8 and 1:16
  at small batch (``pallas_kernels.nm.kernel_gpu_gather``).
* ``"xla"`` -- ``jnp.dot`` on the expanded weight (always available).

``"pallas_tpu"`` and ``"pallas_gpu"`` are aliases of ``"tpu"`` and
``"triton"``; ``"pallas"`` means the backend's default kernel. Every kernel
takes the activation as it comes and the weight as ``compress_nm`` stored it:
nothing is padded or permuted per call.

``implementation=None`` chooses by measurement (:mod:`pallas_kernels.dispatch`):
a kernel runs only where it was measured faster than XLA dense on this device
kind (shipped table, or opt-in autotuning); otherwise the XLA path runs.
:func:`choose_implementation` returns the choice, its reason and source. On
CPU the default is XLA; a Pallas kernel requested on CPU runs with
``interpret=True``. The kernels win by bandwidth only (see
:func:`batch_crossover` for where that window closes).
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from pallas_kernels import dispatch
from pallas_kernels.dispatch import Choice
from pallas_kernels.nm import kernel_gpu
from pallas_kernels.nm import kernel_gpu_gather
from pallas_kernels.nm import kernel_tpu
from pallas_kernels.nm import reference
from pallas_kernels.formats import decompress_nm
from pallas_kernels.formats import nm_values_like
from pallas_kernels.formats import NMCompressed

__all__ = ["nm_matmul", "choose_implementation", "Choice", "IMPLEMENTATIONS",
           "batch_crossover", "KERNELS", "Kernel", "PLATFORMS", "kernel_for"]


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
# Name -> the platform each kernel runs natively on (what a dispatch needs).
PLATFORMS: dict[str, str] = {k: kern.platform for k, kern in KERNELS.items()}

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


def batch_crossover(w: NMCompressed, platform: str = "gpu") -> float:
  """Batch above which the kernel stops being memory bound (a model, for reports).

  The dispatch never selects a kernel from this model alone; it needs a
  measurement (see :mod:`pallas_kernels.dispatch`).

  >>> from pallas_kernels.formats import compress_nm
  >>> c = compress_nm(jnp.ones((4, 1)), jnp.array([[1], [1], [0], [0]], bool), 2, 4)
  >>> round(batch_crossover(c, "gpu"))
  166
  """
  bpe = 16.0 * w.n / w.m + w.n / w.m * w.bits
  return bpe / 16.0 * _RIDGE.get(platform, _RIDGE["gpu"])


_DTYPES = ("bfloat16", "float16", "float32")


def _where(name):
  return f" (layer {name!r})" if name else ""


def _check(x, w, name=None):
  """Validates the operands; errors name the weight's shape and the layer."""
  if not isinstance(w, NMCompressed):
    raise TypeError(f"w{_where(name)} must be an NMCompressed, got "
                    f"{type(w).__name__}.")
  shape = tuple(getattr(x, "shape", ()))
  if len(shape) < 1 or shape[-1] != w.shape[0]:
    raise ValueError(f"x{_where(name)} has shape {shape}: its last axis must "
                     f"equal K={w.shape[0]} of the N:M weight of shape "
                     f"{tuple(w.shape)}.")
  for what, dt, of in (("x", x.dtype, shape),
                       ("weight values", w.values.dtype, w.values.shape)):
    if jnp.dtype(dt).name not in _DTYPES:
      raise TypeError(f"{what}{_where(name)} has dtype {jnp.dtype(dt).name} "
                      f"(shape {tuple(of)}); "
                      f"nm_matmul supports {_DTYPES} (weight of shape "
                      f"{tuple(w.shape)}).")


def _measure(x, w: NMCompressed):
  """Returns a ``measure`` callable for the dispatch's autotune, or None."""
  shape = tuple(x.shape)
  batch = 1
  for d in shape[:-1]:
    batch *= d
  xdt = x.dtype

  def measure(impls):
    # pylint: disable=g-import-not-at-top
    from pallas_kernels import _testing
    from pallas_kernels import _timing
    from pallas_kernels.formats import compress_nm
    with jax.ensure_compile_time_eval():
      k, cols = w.shape
      dense = jax.random.normal(jax.random.key(0), (k, cols),
                                jnp.float32).astype(w.dtype)
      mask = _testing.nm_mask(dense, w.n, w.m)
      c = compress_nm(dense, mask, w.n, w.m, tile_groups=w.tile_groups)
      xs = jax.random.normal(jax.random.key(1), (batch, k),
                             jnp.float32).astype(xdt)
      fns = {impl: functools.partial(_kernel_only, impl=impl)
             for impl in impls}
      return _timing.against_dense(fns, c, xs, dense, None)["seconds"]

  return measure


def _kernel_only(x, c, impl):
  return nm_matmul(x, c, implementation=impl)


def choose_implementation(x, w: NMCompressed, implementation: str | None = None,
                          *, platform: str | None = None,
                          name: str | None = None,
                          autotune: bool | None = None) -> Choice:
  """Returns the implementation ``nm_matmul`` uses for these operands, and why.

  The automatic choice is measured (see :mod:`pallas_kernels.dispatch`): a
  kernel runs only where a measurement on this device kind found it faster
  than XLA dense; otherwise, and always on CPU, the XLA path runs.

  Args:
    x: activations (or a ``jax.ShapeDtypeStruct``) with last axis ``K``.
    w: the compressed weight.
    implementation: ``None`` (automatic) or one of :data:`IMPLEMENTATIONS`.
    platform: backend to decide for; defaults to ``jax.default_backend()``.
    name: the layer's path, used in error messages.
    autotune: measure at first use (overrides ``PALLAS_KERNELS_AUTOTUNE``).

  >>> from pallas_kernels.formats import compress_nm
  >>> c = compress_nm(jnp.ones((4, 1)), jnp.array([[1], [1], [0], [0]], bool), 2, 4)
  >>> choose_implementation(jnp.ones((1, 4)), c, platform="cpu").implementation
  'xla'
  >>> choose_implementation(jnp.ones((1, 4)), c, "pallas", platform="cpu")
  Choice(implementation='tpu', reason='requested', source='requested', interpret=True)
  >>> choose_implementation(jnp.ones((1, 3)), c, name="mlp/fc1/kernel")
  Traceback (most recent call last):
  ...
  ValueError: x (layer 'mlp/fc1/kernel') has shape (1, 3): its last axis must equal K=4 of the N:M weight of shape (4, 1).
  """
  _check(x, w, name)
  batch = 1
  for d in x.shape[:-1]:
    batch *= d
  concrete = all(isinstance(d, int) for d in x.shape)
  implementation = _ALIASES.get(implementation, implementation)
  candidates = {k: p for k, p in PLATFORMS.items()
                if implementation is not None or KERNELS[k].unsupported(w) is None}
  return dispatch.choose(
      op="nm", candidates=candidates, pattern=f"{w.n}:{w.m}", dtype=w.dtype,
      shape=tuple(w.shape), batch=max(batch, 1),
      implementation=implementation, platform=platform,
      measure=_measure(x, w) if concrete else None, autotune=autotune)


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
              interpret: bool | None = None,
              name: str | None = None) -> jax.Array:
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
    name: the layer's path, named in error messages.

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
  choice = choose_implementation(x, w, implementation, name=name)
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
