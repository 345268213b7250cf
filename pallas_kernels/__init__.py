"""Pallas kernels for N:M and block-sparse matmul, each with an XLA fallback.

Each op is a folder (``reference``, ``kernel_tpu``, ``kernel_gpu``, ``api``,
``bench``); the ``api`` picks the implementation (inspect it with the op's
``choose_implementation``; override it with ``implementation=``). Benchmarks:
``python -m pallas_kernels.bench``.
"""
from pallas_kernels.block_sparse_matmul import block_sparse_matmul
from pallas_kernels.block_sparse_matmul import block_sparse_matmul_reference
from pallas_kernels.block_sparse_matmul import sparse_dense_matmul
from pallas_kernels.block_sparse_matmul import sparse_dense_matmul_reference
from pallas_kernels.nm_matmul import nm_matmul
from pallas_kernels.nm_matmul import nm_matmul_reference

__all__ = [
    "block_sparse_matmul", "block_sparse_matmul_reference", "nm_matmul",
    "nm_matmul_reference", "sparse_dense_matmul",
    "sparse_dense_matmul_reference",
]
