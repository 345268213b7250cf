"""Block-sparse matmul: dense x sparse and sparse x dense."""
from pallas_kernels.block_sparse.api import block_sparse_matmul
from pallas_kernels.block_sparse.api import Choice
from pallas_kernels.block_sparse.api import choose_implementation
from pallas_kernels.block_sparse.api import sparse_dense_matmul
from pallas_kernels.block_sparse.reference import block_sparse_matmul_reference
from pallas_kernels.block_sparse.reference import sparse_dense_matmul_reference

__all__ = ["block_sparse_matmul", "sparse_dense_matmul",
           "block_sparse_matmul_reference", "sparse_dense_matmul_reference",
           "choose_implementation", "Choice"]
