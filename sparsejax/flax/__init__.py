"""Flax adapters: sparsify a Linen or NNX model without editing its code.

The param-transform path needs no adapter and works for any model:
`model.apply({"params": sparsifier.view(params, state)}, x)` (Linen) or
`nnx.merge(graphdef, sparsifier.view(state, sparsity))` (NNX). The adapters
here put the same view inside the model so training code stays unchanged:

* `sparsejax.flax.linen.sparsify(ModuleClass, sparsifier)`: a Linen class
  whose params (paths and checkpoints unchanged) are viewed through the
  sparsifier, with the `SparsityState` passed in a `"sparsity"` collection.
* `sparsejax.flax.nnx.sparsify(model, sparsifier)`: NNX module surgery that
  adds `Mask` variables next to the targeted params and routes each targeted
  module's forward through the view; `nnx.Optimizer(..., wrt=nnx.Param)`
  leaves masks alone.
"""
