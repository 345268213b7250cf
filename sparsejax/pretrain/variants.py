"""Recipe variants: every recipe as written, or shrunk to fit a laptop CPU.

A recipe in :mod:`sparsejax.pretrain.recipes` is written for the machine it
targets (GPT-small on a GPU box, a 1.2B model on a TPU pod slice). Its
``cpu`` variant keeps what the recipe is about -- the method, the rules and
the method's own knobs -- and takes everything that sizes the run from the
embedded default: the model's width and depth, the ``pydoc_data`` corpus, the
batch, the optimizer schedule, the number of steps and the evaluation sizes,
on one process. Knobs counted in steps (``sparsity.frequency``,
``sparsity.delta_t``) and a mask-decay rate (``sparsity.c``, per step) are
rescaled with the run length, so the schedule keeps its shape. It runs in a
few minutes on a 2-core CPU with no override::

  python -m sparsejax.pretrain --config gpt_small_rigl_90:cpu

(``NAME:VARIANT`` or ``FILE:VARIANT`` passes ``VARIANT`` to the recipe's
``get_config``, the ``ml_collections`` convention.) A recipe supports the
variants by ending with ``return variants.sized(c, variant)``.
"""
from __future__ import annotations

import ml_collections

from sparsejax.pretrain import config as config_lib

__all__ = ["VARIANTS", "cpu_sized", "sized"]

VARIANTS = ("", "cpu")
"""The variant names, ``""`` (the recipe as written) and ``"cpu"``."""

# Sections taken whole from the embedded default by the cpu variant.
_SIZE_SECTIONS = ("data", "optim", "train", "checkpoint", "eval", "mesh")
_MODEL_SIZE = ("d_model", "n_layers", "n_heads", "d_ff", "dtype", "remat",
               "dropout")
_STEP_KNOBS = ("frequency", "delta_t")


def cpu_sized(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The recipe ``config`` sized like the embedded default (a 2-core CPU).

  Args:
    config: A recipe's config.

  Returns:
    A new ``ConfigDict``: the recipe's method, rules and sparsity knobs; the
    default's model size, data, optimizer, steps, evaluation and mesh; step
    counts and the mask-decay rate rescaled to the shorter run; one process
    with the progress display on.

  Example:
    >>> c = config_lib.get_config()
    >>> c.train.steps, c.sparsity.frequency, c.model.d_model = 100_000, 1000, 768
    >>> small = cpu_sized(c)
    >>> small.train.steps, small.sparsity.frequency, small.model.d_model
    (500, 5, 128)
  """
  base = config_lib.get_config()
  out = ml_collections.ConfigDict(config_lib.to_dict(config))
  scale = base.train.steps / config.train.steps
  for section in _SIZE_SECTIONS:
    out[section] = ml_collections.ConfigDict(config_lib.to_dict(base[section]))
  for key in _MODEL_SIZE:
    out.model[key] = base.model[key]
  for key in _STEP_KNOBS:
    out.sparsity[key] = max(1, round(config.sparsity[key] * scale))
  if config.sparsity.c is not None:
    out.sparsity.c = config.sparsity.c / scale
  out.log_every, out.progress, out.distributed = base.log_every, True, False
  return out


def sized(config: ml_collections.ConfigDict, variant: str = ""
          ) -> ml_collections.ConfigDict:
  """``config`` as the variant asks: ``""`` as is, ``"cpu"`` CPU-sized.

  Args:
    config: A recipe's config.
    variant: One of :data:`VARIANTS`.

  Returns:
    The config of that variant.

  Raises:
    ConfigError: An unknown variant (naming the known ones).

  Example:
    >>> sized(config_lib.get_config(), "gpu")
    Traceback (most recent call last):
    ...
    sparsejax.pretrain.config.ConfigError: unknown config variant 'gpu'; a recipe takes ':cpu' (CPU-sized) or no variant.
  """
  if variant == "":
    return config
  if variant == "cpu":
    return cpu_sized(config)
  raise config_lib.ConfigError(
      f"unknown config variant {variant!r}; a recipe takes ':cpu' "
      f"(CPU-sized) or no variant.")
