"""The packaged pretraining recipes, by name: ``--config smoke[:cpu]``.

Each module here defines ``get_config(variant="")`` returning a
``ConfigDict`` that starts from the schema
:func:`sparsejax.pretrain.config.get_config` (the embedded default) or from
another recipe (``gpt_small_dense`` is the scale of every ``gpt_small_*``
recipe, ``tpu_pod_dense`` of every ``tpu_pod_*``). They ship in the wheel, so
``python -m sparsejax.pretrain --config NAME`` works from any install; a
path to a Python file with ``get_config()`` works too, for recipes of your
own.

Every recipe also has a CPU-sized variant, ``NAME:cpu``, that runs on the
embedded corpus in a few minutes with no override
(:mod:`sparsejax.pretrain.variants`).
"""
from __future__ import annotations

import os

from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import validation

__all__ = ["names", "recipe_path"]

_HERE = os.path.dirname(os.path.abspath(__file__))


def names() -> tuple[str, ...]:
  """The names of the packaged recipes, sorted.

  Example:
    >>> "smoke" in names(), "gpt_small_rigl_90" in names()
    (True, True)
  """
  return tuple(sorted(
      stem for stem, ext in map(os.path.splitext, os.listdir(_HERE))
      if ext == ".py" and not stem.startswith("_")))


def recipe_path(name: str) -> str:
  """The file of the packaged recipe ``name``.

  Args:
    name: A recipe name, one of :func:`names` (e.g. ``"smoke"``).

  Returns:
    The path of its Python file, for
    :func:`sparsejax.pretrain.config.load_config_file`.

  Raises:
    ConfigError: ``name`` is no packaged recipe; the message lists them.

  Example:
    >>> os.path.basename(recipe_path("smoke"))
    'smoke.py'
    >>> recipe_path("smok")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sparsejax.pretrain.config.ConfigError: --config: unknown recipe 'smok'; did you mean 'smoke'? The recipes are: activation_topk, ..., tpu_pod_srste_2to4; or give the path of a Python file with get_config().
  """
  available = names()
  if name in available:
    return os.path.join(_HERE, name + ".py")
  near = validation.closest_key(name, available)
  hint = f"; did you mean {near!r}?" if near else "."
  raise config_lib.ConfigError(
      f"--config: unknown recipe {name!r}{hint} The recipes are: "
      f"{', '.join(available)}; or give the path of a Python file with "
      f"get_config().")
