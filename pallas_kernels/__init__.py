"""Pallas kernels for N:M and block-sparse matmul, each with an XLA fallback.

The package is self-contained: it imports nothing from ``sparsejax``. It owns
the compressed formats (``pallas_kernels.formats``, plain JAX, no Pallas) and
one folder per op (``reference``, ``kernel_tpu``, ``kernel_gpu``, ``api``,
``bench``); the ``api`` picks the implementation (inspect it with the op's
``choose_implementation``; override it with ``implementation=``).

Importing the package does not import Pallas: the ops below load on first
use, so ``import pallas_kernels.formats`` stays cheap. Benchmarks:
``python -m pallas_kernels.bench``.

>>> import pallas_kernels
>>> callable(pallas_kernels.nm_matmul)
True
"""
import importlib

_LAZY = {
    "block_sparse_matmul": "pallas_kernels.block_sparse",
    "block_sparse_matmul_reference": "pallas_kernels.block_sparse",
    "sparse_dense_matmul": "pallas_kernels.block_sparse",
    "sparse_dense_matmul_reference": "pallas_kernels.block_sparse",
    "nm_matmul": "pallas_kernels.nm",
    "nm_matmul_reference": "pallas_kernels.nm",
}


def __getattr__(name: str):
  if name in _LAZY:
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
  raise AttributeError(f"module 'pallas_kernels' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_LAZY))


__all__ = sorted(_LAZY)
