"""The embedded default of ``python -m sparsejax.pretrain`` and its variants.

``configs/default.py`` (progressive 2:4 next to a dense baseline on the
``pydoc_data`` text), ``configs/default.py:smoke`` (a few steps, for CI),
``configs/default.py:srste`` (2:4 SR-STE) and ``configs/default.py:dense``.
"""
from sparsejax.train.config import get_config as _get_config


def get_config(variant: str = ""):
  """Returns the default config or one of its variants.

  Args:
    variant: ``""``, ``"smoke"``, ``"srste"`` or ``"dense"``.

  Returns:
    A ``ConfigDict``.

  Example:
    >>> get_config("srste").sparsity.method
    'srste_nm'
  """
  return _get_config(variant)
