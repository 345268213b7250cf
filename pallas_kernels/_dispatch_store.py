"""The measurements the dispatch reads: the shipped table and the per-device
autotune cache (JSON files of rows, validated, memoised, written atomically).

Re-exported by :mod:`pallas_kernels.dispatch`.
"""
from __future__ import annotations

import json
import os
import pathlib
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import jax

from pallas_kernels._dispatch_keys import batch_bucket
from pallas_kernels._dispatch_keys import device_kind
from pallas_kernels._dispatch_keys import Key

__all__ = ["SCHEMA", "ENV_CACHE_DIR", "table_path", "cache_path",
           "check_rows", "load_table", "load_cache", "merge_rows",
           "write_rows", "record"]

SCHEMA = 1
ENV_CACHE_DIR = "PALLAS_KERNELS_CACHE_DIR"
_ROW_FIELDS = {"device_kind": str, "op": str, "pattern": str, "dtype": str,
               "shape": list, "batch": int, "implementation": str,
               "us": (int, float), "dense_us": (int, float)}


def table_path() -> pathlib.Path:
  """The table shipped with the package.

  >>> table_path().name
  'table.json'
  """
  return pathlib.Path(__file__).parent / "measured" / "table.json"


def cache_path(kind: str | None = None) -> pathlib.Path:
  """The autotune cache file for a device kind and this JAX version.

  >>> cache_path("NVIDIA H200").name.startswith("dispatch-nvidia-h200-jax")
  True
  """
  root = os.environ.get(ENV_CACHE_DIR) or os.path.join(
      os.path.expanduser("~"), ".cache", "pallas_kernels")
  kind = kind if kind is not None else (device_kind() or "unknown")
  slug = "".join(ch if ch.isalnum() else "-" for ch in kind.lower()).strip("-")
  return pathlib.Path(root) / f"dispatch-{slug}-jax{jax.__version__}.json"


def check_rows(rows: Any, where: str = "rows") -> list[dict[str, Any]]:
  """Validates measurement rows; raises ValueError naming the first bad one.

  >>> check_rows([{"device_kind": "x", "op": "nm", "pattern": "2:4",
  ...   "dtype": "bfloat16", "shape": [8, 8], "batch": 1,
  ...   "implementation": "pallas_gpu", "us": 1.0, "dense_us": 2.0}])[0]["op"]
  'nm'
  >>> check_rows([{"op": "nm"}])
  Traceback (most recent call last):
  ...
  ValueError: rows[0] lacks field 'device_kind' ...
  """
  if not isinstance(rows, list):
    raise ValueError(f"{where} must be a list, got {type(rows).__name__}.")
  for i, row in enumerate(rows):
    if not isinstance(row, dict):
      raise ValueError(f"{where}[{i}] must be an object, got {row!r}.")
    for name, kind in _ROW_FIELDS.items():
      if name not in row:
        raise ValueError(f"{where}[{i}] lacks field {name!r} (fields: "
                         f"{sorted(_ROW_FIELDS)}).")
      if not isinstance(row[name], kind) or isinstance(row[name], bool):
        raise ValueError(f"{where}[{i}] field {name!r} has the wrong type: "
                         f"{row[name]!r}.")
    if not (row["us"] > 0 and row["dense_us"] > 0):
      raise ValueError(f"{where}[{i}] has non-positive times: {row!r}.")
    if batch_bucket(row["batch"]) != row["batch"]:
      raise ValueError(f"{where}[{i}] batch {row['batch']} is not a bucket "
                       "(a power of two).")
  return rows


def _read(path: pathlib.Path) -> dict[str, Any]:
  with open(path, encoding="utf-8") as f:
    data = json.load(f)
  if not isinstance(data, dict) or data.get("schema") != SCHEMA:
    raise ValueError(f"schema is not {SCHEMA}")
  check_rows(data.get("rows"), "rows")
  return data


_loaded: dict[tuple[str, int, int, int], Any] = {}


def _memo_read(path: pathlib.Path):
  try:
    st = path.stat()
  except OSError:
    return None
  key = (str(path), st.st_mtime_ns, st.st_size, st.st_ino)
  if key not in _loaded:
    try:
      _loaded[key] = _read(path)
    except (OSError, ValueError, TypeError, KeyError) as e:
      _loaded[key] = e
  return _loaded[key]


def _read_or_warn(path, what):
  """The parsed JSON at ``path``; None where there is none, or (with a
  warning naming ``what``, for the caller's caller) where it does not parse."""
  data = _memo_read(path)
  if isinstance(data, Exception):
    warnings.warn(f"ignoring {what} {path}: {data}", stacklevel=3)
    return None
  return data


def load_table(path: str | os.PathLike | None = None) -> list[dict[str, Any]]:
  """Rows of the shipped measurement table (or of ``path``).

  An unreadable table is ignored with a warning.

  >>> isinstance(load_table(), list)
  True
  """
  path = pathlib.Path(path) if path is not None else table_path()
  data = _read_or_warn(path, "the measurement table")
  return [] if data is None else data["rows"]


def load_cache(path: str | os.PathLike | None = None,
               kind: str | None = None) -> list[dict[str, Any]]:
  """Rows of the autotune cache for ``kind`` and this JAX version.

  A cache written by another JAX version or device kind, or one that does not
  parse, is ignored with a warning.

  >>> load_cache("/nonexistent/cache.json")
  []
  """
  kind = kind if kind is not None else device_kind()
  path = pathlib.Path(path) if path is not None else cache_path(kind)
  data = _read_or_warn(path, "the unreadable autotune cache")
  if data is None:
    return []
  if data.get("jax") != jax.__version__ or data.get("device_kind") != kind:
    warnings.warn(
        f"ignoring the stale autotune cache {path}: written for "
        f"device_kind={data.get('device_kind')!r} jax={data.get('jax')!r}, "
        f"this process has device_kind={kind!r} jax={jax.__version__!r}",
        stacklevel=2)
    return []
  return data["rows"]


def merge_rows(old: Iterable[Mapping[str, Any]],
               new: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
  """``old`` with rows of the same case and implementation replaced by ``new``.

  >>> a = dict(device_kind="d", op="nm", pattern="2:4", dtype="bfloat16",
  ...          shape=[8, 8], batch=1, implementation="k", us=2.0, dense_us=1.0)
  >>> [r["us"] for r in merge_rows([a], [dict(a, us=0.5)])]
  [0.5]
  """
  def ident(r):
    return (Key.of_row(r), r["implementation"])

  out = {ident(r): dict(r) for r in old}
  for r in new:
    out[ident(r)] = dict(r)
  return sorted(out.values(), key=lambda r: (
      r["device_kind"], r["op"], r["pattern"], r["dtype"], r["shape"],
      r["batch"], r["implementation"]))


def write_rows(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]],
               **header: Any) -> pathlib.Path:
  """Merges ``rows`` into the JSON file at ``path`` (atomic replace).

  ``header`` fields (e.g. ``jax``, ``device_kind``) are stored beside the
  rows. An unreadable existing file is replaced.

  >>> import tempfile, os
  >>> p = os.path.join(tempfile.mkdtemp(), "t.json")
  >>> _ = write_rows(p, [])
  >>> load_table(p)
  []
  """
  path = pathlib.Path(path)
  old: list[dict[str, Any]] = []
  if path.exists():
    try:
      old = _read(path)["rows"]
    except (OSError, ValueError, TypeError, KeyError):
      old = []
  data = dict(schema=SCHEMA, **header)
  data["rows"] = merge_rows(old, check_rows(list(rows)))
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
  head = json.dumps({k: v for k, v in data.items() if k != "rows"})[:-1]
  body = ",\n".join("  " + json.dumps(r) for r in data["rows"])
  with os.fdopen(fd, "w", encoding="utf-8") as f:
    f.write(f'{head}, "rows": [\n{body}\n]}}\n' if body else
            f'{head}, "rows": []}}\n')
  os.replace(tmp, path)
  return path


def record(rows: Iterable[Mapping[str, Any]],
           path: str | os.PathLike | None = None,
           kind: str | None = None) -> pathlib.Path:
  """Adds measured rows to the autotune cache of ``kind`` (this JAX version).

  >>> import tempfile, os
  >>> p = os.path.join(tempfile.mkdtemp(), "c.json")
  >>> row = dict(device_kind="cpu", op="nm", pattern="2:4", dtype="float32",
  ...            shape=[8, 8], batch=1, implementation="k", us=1.0, dense_us=2.0)
  >>> _ = record([row], p, kind="cpu")
  >>> load_cache(p, kind="cpu")[0]["implementation"]
  'k'
  """
  kind = kind if kind is not None else device_kind()
  path = path if path is not None else cache_path(kind)
  return write_rows(path, rows, device_kind=kind, jax=jax.__version__)
