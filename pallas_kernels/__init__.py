"""Pallas kernels for N:M and block-sparse matmul, each with an XLA fallback."""
