"""Flax integration: one entry point for Linen and NNX, one layer hook.

* `sparsify(model, sparsifier)`: a Linen or NNX model whose forward pass
  sees its params through a sparsifier, with param paths (and so
  checkpoints) unchanged (`sparsejax.flax.adapter`).
* `intercept_dense(handler, model)`: every dense layer call (Linen
  `nn.Dense`, NNX `nnx.Linear`) handed to a handler with its path, input and
  kernel (`sparsejax.flax.intercept`); one-shot calibration capture and
  serving both run on it.
* `sparsify_activations(model, rules)`: chosen dense layers see their input
  sparsified per token (N:M along the contraction axis, or Q-Sparse top-k),
  with the achieved sparsity per layer (`achieved_sparsity`)
  (`sparsejax.flax.activation_sparsity`); composes with `sparsify`.
* `serving()`: dense layers with exported (compressed) kernels run on the
  `pallas_kernels` ops (`sparsejax.flax.compressed`).

The param-transform path needs none of this and works for any model:
`model.apply({"params": sparsifier.view(params, state)}, x)` (Linen) or
`nnx.merge(graphdef, sparsifier.view(params, state))(x)` (NNX).
"""

from sparsejax.flax.activation_sparsity import ACTIVATION_SPARSITY
from sparsejax.flax.activation_sparsity import ActivationSparse
from sparsejax.flax.activation_sparsity import achieved_sparsity
from sparsejax.flax.activation_sparsity import sparsify_activations
from sparsejax.flax.adapter import COLLECTION
from sparsejax.flax.adapter import Sparse
from sparsejax.flax.adapter import SparsityVariable
from sparsejax.flax.adapter import sparsify
from sparsejax.flax.adapter import state_collection
from sparsejax.flax.intercept import DenseCall
from sparsejax.flax.intercept import intercept_dense
from sparsejax.flax.compressed import serving

__all__ = [
    "ACTIVATION_SPARSITY",
    "ActivationSparse",
    "COLLECTION",
    "DenseCall",
    "Sparse",
    "SparsityVariable",
    "achieved_sparsity",
    "intercept_dense",
    "serving",
    "sparsify",
    "sparsify_activations",
    "state_collection",
]
