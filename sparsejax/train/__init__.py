"""Pretraining machinery behind ``python -m sparsejax.pretrain``.

One concept per module:

* :mod:`sparsejax.train.config` -- the config schema, the embedded default
  and its variants, validation;
* :mod:`sparsejax.train.recipes` -- optimizer and sparsifier from a config;
* :mod:`sparsejax.train.sharding` -- the ``(data, fsdp, tensor)`` mesh and
  the shardings of params, optimizer state, masks and batches;
* :mod:`sparsejax.train.checkpoint` -- orbax checkpoints and workdir checks;
* :mod:`sparsejax.train.outputs` -- metrics, progress bar, plots, export;
* :mod:`sparsejax.train.loop` -- planning, the training loop, evaluation.
"""
