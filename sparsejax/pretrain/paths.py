"""Workdir paths through :mod:`etils.epath`: local folders or object stores.

A workdir may be a local folder or any ``etils.epath`` path, such as
``gs://bucket/run`` (with ``gcsfs`` installed for the fsspec backends).
:func:`as_path` is the one place that turns what a user gave into a path:
local paths become absolute, others stay as given. Object stores have no
append mode and no atomic rename; :func:`write_text_atomic` writes a
temporary file and replaces the target, which is atomic on local disks and
leaves either the old or the new whole file on an object store.
"""
from __future__ import annotations

import os

from etils import epath

__all__ = ["is_local", "as_path", "write_text_atomic"]

_TMP_SUFFIX = ".tmp"


def is_local(path: str | os.PathLike) -> bool:
  """Whether ``path`` is on the local file system (it names no URI scheme).

  Args:
    path: A path as a ``str``, ``pathlib.Path`` or ``epath.Path``.

  Returns:
    ``False`` for ``gs://...``, ``s3://...`` and other ``scheme://`` paths.

  Example:
    >>> is_local("runs/a"), is_local(epath.Path("gs://bucket/run"))
    (True, False)
  """
  return "://" not in os.fspath(path)


def as_path(path: str | os.PathLike) -> epath.Path:
  """``path`` as an ``epath.Path``: absolute when local, else as given.

  Args:
    path: A path as a ``str``, ``pathlib.Path`` or ``epath.Path``.

  Returns:
    The path.

  Raises:
    TypeError: ``path`` is not a ``str`` or ``os.PathLike``.
    ValueError: ``path`` is empty.

  Example:
    >>> as_path("runs/a") == epath.Path(os.path.abspath("runs/a"))
    True
    >>> str(as_path("gs://bucket/run"))
    'gs://bucket/run'
    >>> as_path("")
    Traceback (most recent call last):
    ...
    ValueError: path must not be empty.
  """
  if not isinstance(path, (str, os.PathLike)):
    raise TypeError(f"path must be a str or os.PathLike; got "
                    f"{type(path).__name__} {path!r:.80}.")
  text = os.fspath(path)
  if not text:
    raise ValueError("path must not be empty.")
  return epath.Path(os.path.abspath(text) if is_local(text) else text)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
  """Writes ``text`` to ``<path>.tmp``, then replaces ``path`` with it.

  Args:
    path: The file (its folder must exist).
    text: The whole new content.

  Example:
    >>> import tempfile
    >>> target = epath.Path(tempfile.mkdtemp()) / "a.json"
    >>> write_text_atomic(target, "{}")
    >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
    ('{}', ['a.json'])
  """
  path = epath.Path(path)
  tmp = path.parent / (path.name + _TMP_SUFFIX)
  tmp.write_text(text)
  tmp.replace(path)
