"""The one place that absorbs Pallas API differences across JAX versions.

Supported range: JAX 0.10.2 to 0.12.x. Kernels import Pallas names from here
only. Differences handled:

* TPU compiler params: ``pltpu.CompilerParams`` (``TPUCompilerParams`` before
  0.7); a plain dict is no longer accepted (0.6.1+).
* Triton compiler params: ``plgpu.CompilerParams`` in
  ``jax.experimental.pallas.triton`` (``TritonCompilerParams`` before 0.7).
  The Triton lowering warns that it is deprecated from 0.11; the warning is
  silenced here for our own calls only.
* ``pl.load``/``pl.store`` are gone (0.9): kernels index refs directly;
  masked loads and stores for ragged edges on the Triton lowering are
  ``jax.experimental.pallas.triton.load``/``store`` (:func:`masked_load`,
  :func:`masked_store`).
* ``pl.Buffered(n)`` as a ``BlockSpec`` ``pipeline_mode``: the Mosaic TPU
  grid pipeline accepts only 1 (resident operands) or 2 buffers at both ends
  of the range; :func:`buffered` returns ``None`` (default double
  buffering) where a release lacks the class.
* Cross-lowering for CUDA from a CPU-only host: 0.12 needs an abstract GPU
  device (``jax.sharding.AbstractDevice``) to pick the target architecture;
  the Triton custom call has no serialization stability guarantee, so export
  disables that check explicitly.
"""
from __future__ import annotations

import contextlib
import warnings

import jax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

try:
  from jax.experimental.pallas import triton as _pltriton
except ImportError:  # pragma: no cover - jaxlib without the Triton dialect
  _pltriton = None

__all__ = ["pl", "pltpu", "PrefetchScalarGridSpec", "tpu_params",
           "triton_params", "vmem", "smem", "silence_triton_deprecation",
           "export", "tpu_interpret_params", "JAX_VERSION", "backend",
           "HAS_TRITON", "SQUEEZED", "masked_load", "masked_store",
           "buffered"]

JAX_VERSION = tuple(int(p) for p in jax.__version__.split(".")[:3]
                    if p.isdigit())
HAS_TRITON = _pltriton is not None

PrefetchScalarGridSpec = pltpu.PrefetchScalarGridSpec
# Marker for a squeezed block dimension (``None`` in older releases).
SQUEEZED = getattr(pl, "squeezed", None)

_TPUParams = getattr(pltpu, "CompilerParams", None) or getattr(
    pltpu, "TPUCompilerParams")
_TritonParams = None
if _pltriton is not None:
  _TritonParams = getattr(_pltriton, "CompilerParams", None) or getattr(
      _pltriton, "TritonCompilerParams")


def tpu_params(dimension_semantics, vmem_limit_bytes=None):
  """TPU (Mosaic) compiler params for this JAX version.

  >>> type(tpu_params(("parallel",))).__name__
  'CompilerParams'
  """
  kw = dict(dimension_semantics=tuple(dimension_semantics))
  if vmem_limit_bytes is not None:
    kw["vmem_limit_bytes"] = vmem_limit_bytes
  return _TPUParams(**kw)


def triton_params(num_warps: int = 4, num_stages: int = 3):
  """Triton compiler params for this JAX version (selects the Triton lowering).

  >>> triton_params(8, 2).num_warps
  8
  """
  if _TritonParams is None:
    raise RuntimeError("this jaxlib has no Pallas Triton lowering.")
  return _TritonParams(num_warps=num_warps, num_stages=num_stages)


def masked_load(ref, mask, other=0):
  """A Triton-lowering load of ``ref`` (a ``ref.at[...]`` view) under ``mask``.

  Masked-off elements read ``other`` and touch no memory, so a kernel can
  walk ragged edges without padded operands.
  """
  if _pltriton is None:
    raise RuntimeError("this jaxlib has no Pallas Triton lowering.")
  return _pltriton.load(ref, mask=mask, other=other)


def masked_store(ref, value, mask):
  """A Triton-lowering store of ``value`` into ``ref`` under ``mask``."""
  if _pltriton is None:
    raise RuntimeError("this jaxlib has no Pallas Triton lowering.")
  _pltriton.store(ref, value, mask=mask)


def buffered(count: int):
  """``pl.Buffered(count)`` for a ``BlockSpec`` ``pipeline_mode``, or None.

  >>> buffered(3) is None or buffered(3).buffer_count == 3
  True
  """
  cls = getattr(pl, "Buffered", None)
  return cls(count) if cls is not None else None


def vmem(shape, dtype):
  """A VMEM scratch buffer spec.

  >>> vmem((8, 128), jax.numpy.float32).shape
  (8, 128)
  """
  space = getattr(pltpu, "VMEM", None) or pltpu.TPUMemorySpace.VMEM
  return space(shape, dtype)


def smem():
  """The TPU scalar memory space (for ``BlockSpec(memory_space=...)``).

  >>> smem() is not None
  True
  """
  return getattr(pltpu, "SMEM", None) or pltpu.TPUMemorySpace.SMEM


def tpu_interpret_params():
  """Interpreter params with TPU semantics (SMEM, DMA, grid order), or True.

  Pass as ``interpret=`` to run a TPU kernel on CPU the way Mosaic would; falls
  back to the generic interpreter where unavailable.

  >>> tpu_interpret_params() is not None
  True
  """
  params = getattr(pltpu, "InterpretParams", None)
  return params() if params is not None else True


@contextlib.contextmanager
def silence_triton_deprecation():
  """Silences the Triton-lowering deprecation warning of JAX >= 0.11.

  >>> with silence_triton_deprecation():
  ...   pass
  """
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*Pallas Triton backend.*")
    warnings.filterwarnings("ignore", message=".*[Tt]riton.*deprecated.*")
    yield


def backend() -> str:
  """The default backend's platform: ``"cpu"``, ``"gpu"`` or ``"tpu"``.

  >>> backend() in ("cpu", "gpu", "tpu")
  True
  """
  return jax.default_backend()


_DEFAULT_GPU = "NVIDIA H100"


def export(fn, platform: str, *args, gpu_kind: str = _DEFAULT_GPU):
  """Exports ``jit(fn)(*args)`` for ``platform`` ("tpu" or "cuda") anywhere.

  Lowers the Pallas kernels for a platform that need not be present: on a
  CPU-only machine this checks that the kernel lowers (Mosaic TPU, Triton)
  without running it.

  Args:
    fn: the function to export.
    platform: ``"tpu"`` or ``"cuda"``.
    *args: example arguments or ``jax.ShapeDtypeStruct``s.
    gpu_kind: the abstract GPU used to pick the CUDA target architecture.

  Returns:
    A ``jax.export.Exported``.

  >>> e = export(lambda x: x + 1, "tpu", jax.numpy.ones(2))
  >>> e.platforms
  ('tpu',)
  """
  checks = [jax.export.DisabledSafetyCheck.custom_call(name)
            for name in ("__gpu$xla.gpu.triton", "mosaic_gpu", "mosaic_gpu_v2",
                         "tpu_custom_call")]
  with contextlib.ExitStack() as stack:
    stack.enter_context(silence_triton_deprecation())
    if platform in ("cuda", "rocm") and hasattr(jax.sharding, "AbstractDevice"):
      device = jax.sharding.AbstractDevice(device_kind=gpu_kind, num_cores=None,
                                           platform="gpu")
      mesh = jax.sharding.AbstractMesh((1,), ("_export",),
                                       abstract_device=device)
      stack.enter_context(jax.sharding.use_abstract_mesh(mesh))
    return jax.export.export(jax.jit(fn), platforms=[platform],
                             disabled_checks=checks)(*args)
