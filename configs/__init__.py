"""Pretraining configs for ``python -m sparsejax.pretrain --config FILE``.

Each file defines ``get_config(variant="")`` returning a ``ConfigDict`` that starts
from the schema :func:`sparsejax.pretrain.config.get_config` (the embedded
default) or from another file here (``gpt_small_dense.py`` is the scale of
every ``gpt_small_*`` recipe, ``tpu_pod_dense.py`` of every ``tpu_pod_*``).

Every recipe also has a CPU-sized variant, ``FILE:cpu``, that runs on the
embedded corpus in a few minutes with no override
(:mod:`sparsejax.pretrain.variants`).
"""
