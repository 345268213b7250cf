"""N:M sparse matmul: ``x @ W`` with ``W`` N:M compressed along K.

References:
  * Mishra, A., Albericio Latorre, J., Pool, J., Stosic, D., Stosic, D.,
    Venkatesh, G., Yu, C. and Micikevicius, P. "Accelerating Sparse Deep Neural
    Networks." arXiv:2104.08378, 2021.
"""
from pallas_kernels.nm.api import batch_crossover
from pallas_kernels.nm.api import choose_implementation
from pallas_kernels.nm.api import Choice
from pallas_kernels.nm.api import nm_matmul
from pallas_kernels.nm.reference import nm_matmul_reference

__all__ = ["nm_matmul", "nm_matmul_reference", "choose_implementation",
           "Choice", "batch_crossover"]
