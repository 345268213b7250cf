"""Flax integration: one entry point for Linen and NNX, one layer hook.

* `sparsify(model, sparsifier)`: a Linen or NNX model whose forward pass
  sees its params through a sparsifier, with param paths (and so
  checkpoints) unchanged (`sparsejax.flax.adapter`).
* `intercept_dense(handler, model)`: every dense layer call (Linen
  `nn.Dense`, NNX `nnx.Linear`) handed to a handler with its path, input and
  kernel (`sparsejax.flax.intercept`); one-shot calibration capture and
  serving both run on it.
* `serving()`: dense layers with exported (compressed) kernels run on the
  `pallas_kernels` ops (`sparsejax.flax.compressed`).

The param-transform path needs none of this and works for any model:
`model.apply({"params": sparsifier.view(params, state)}, x)` (Linen) or
`nnx.merge(graphdef, sparsifier.view(params, state))(x)` (NNX).
"""

from sparsejax.flax.adapter import COLLECTION
from sparsejax.flax.adapter import Sparse
from sparsejax.flax.adapter import SparsityVariable
from sparsejax.flax.adapter import sparsify
from sparsejax.flax.adapter import state_collection
from sparsejax.flax.intercept import DenseCall
from sparsejax.flax.intercept import intercept_dense
from sparsejax.flax.compressed import serving

__all__ = [
    "COLLECTION",
    "DenseCall",
    "Sparse",
    "SparsityVariable",
    "intercept_dense",
    "serving",
    "sparsify",
    "state_collection",
]
