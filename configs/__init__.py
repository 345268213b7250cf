"""Pretraining configs for ``python -m sparsejax.pretrain --config FILE``.

Each file defines ``get_config(variant="")`` returning a ``ConfigDict`` built
from :func:`sparsejax.train.config.get_config`.
"""
