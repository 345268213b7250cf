"""Measured dispatch shared by the kernel ops: a kernel runs only where it was measured faster than dense.

Every op ``api`` asks :func:`choose` which of its implementations to run. The
answer comes, in this order, from:

1. ``implementation=`` passed by the caller (source ``"requested"``);
2. :func:`force` (a context manager) or the ``PALLAS_KERNELS_IMPLEMENTATION``
   environment variable (source ``"forced"``);
3. a measurement of this case on this device kind: the user's autotune
   cache on disk (source ``"autotune"``), then the table shipped in
   ``pallas_kernels/measured/`` (source ``"table"``); the fastest kernel wins
   only if it beat XLA dense ``jnp.dot`` by :data:`MARGIN`;
4. with autotuning on (``PALLAS_KERNELS_AUTOTUNE=1`` or :func:`autotune`),
   a first-use measurement of kernel against dense on this device, written to
   the cache (source ``"autotune"``);
5. otherwise the dense XLA path (source ``"default"``): no model alone ever
   selects a kernel.

Only kernels that run natively on the current backend are chosen
automatically; on CPU the answer is XLA (a kernel in interpret mode runs only
when asked for). A case is keyed by device kind, op, pattern, dtype, shape and
batch bucket (:func:`batch_bucket`); a block-list pattern carries a density
bucket (:func:`density_bucket`). The cache lives in
``~/.cache/pallas_kernels/`` (``PALLAS_KERNELS_CACHE_DIR`` overrides it), one
file per device kind and JAX version; a stale or unreadable cache is ignored
with a warning.

>>> c = choose(op="nm", candidates={"pallas_gpu": "gpu"}, pattern="2:4",
...            dtype="bfloat16", shape=(4096, 4096), batch=1, platform="cpu")
>>> c.implementation, c.source
('xla', 'default')
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import os
import pathlib
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import jax

__all__ = ["Choice", "Key", "choose", "force", "forced", "autotune", "batch_bucket",
           "density_bucket", "DENSITY_BUCKETS", "device_kind", "load_table", "load_cache", "record", "cache_path",
           "table_path", "merge_rows", "check_rows", "MARGIN", "SCHEMA",
           "ENV_AUTOTUNE", "ENV_CACHE_DIR", "ENV_FORCE"]

SCHEMA = 1
MARGIN = 1.03
"""A kernel is chosen only if ``dense_us / kernel_us >= MARGIN``."""
ENV_AUTOTUNE = "PALLAS_KERNELS_AUTOTUNE"
ENV_CACHE_DIR = "PALLAS_KERNELS_CACHE_DIR"
ENV_FORCE = "PALLAS_KERNELS_IMPLEMENTATION"
_ROW_FIELDS = {"device_kind": str, "op": str, "pattern": str, "dtype": str,
               "shape": list, "batch": int, "implementation": str,
               "us": (int, float), "dense_us": (int, float)}

_forced: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "pallas_kernels_forced", default=None)
_autotune: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "pallas_kernels_autotune", default=None)


class Choice(NamedTuple):
  """Which implementation runs, why, and where the decision came from.

  ``source`` is ``"requested"``, ``"forced"``, ``"table"``, ``"autotune"`` or
  ``"default"``; ``interpret`` is True when a Pallas kernel runs on a backend
  it was not written for (interpret mode).
  """
  implementation: str
  reason: str
  source: str
  interpret: bool = False


@dataclasses.dataclass(frozen=True)
class Key:
  """One measured case.

  >>> Key("NVIDIA H200", "nm", "2:4", "bfloat16", (4096, 4096), 8).as_dict()["batch"]
  8
  """
  device_kind: str
  op: str
  pattern: str
  dtype: str
  shape: tuple[int, ...]
  batch: int

  def as_dict(self) -> dict[str, Any]:
    return dict(device_kind=self.device_kind, op=self.op, pattern=self.pattern,
                dtype=self.dtype, shape=list(self.shape), batch=self.batch)

  @classmethod
  def of_row(cls, row: Mapping[str, Any]) -> "Key":
    return cls(row["device_kind"], row["op"], row["pattern"], row["dtype"],
               tuple(row["shape"]), int(row["batch"]))


def batch_bucket(batch: int) -> int:
  """The batch bucket a measurement covers: the next power of two.

  >>> [batch_bucket(b) for b in (1, 2, 3, 8, 9, 16)]
  [1, 2, 4, 8, 16, 16]
  """
  if batch < 1:
    raise ValueError(f"batch must be >= 1, got {batch}.")
  return 1 << (int(batch) - 1).bit_length()


DENSITY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0)
"""Upper edges of the stored-density buckets of block-sparse patterns."""


def density_bucket(density: float) -> float:
  """The density bucket a measurement covers: the next edge at or above it.

  A case measured at a bucket's edge does at least the work of any case in
  the bucket, so a kernel measured faster there is not slower below it.

  >>> [density_bucket(d) for d in (0.01, 0.0996, 0.1, 0.12, 0.25, 0.7)]
  [0.05, 0.1, 0.1, 0.25, 0.25, 1.0]
  """
  if not 0.0 <= density <= 1.0 + 1e-9:
    raise ValueError(f"density must be in [0, 1], got {density}.")
  return next(b for b in DENSITY_BUCKETS if density <= b + 1e-9)


def device_kind(platform: str | None = None) -> str | None:
  """The device kind of ``platform`` (default backend), or None if absent.

  >>> isinstance(device_kind(), str)
  True
  """
  try:
    devices = jax.devices(platform) if platform else jax.devices()
  except RuntimeError:
    return None
  return devices[0].device_kind if devices else None


@contextlib.contextmanager
def force(implementation: str | None):
  """Forces every op in the block to run ``implementation`` (None: automatic).

  An explicit ``implementation=`` argument still wins.

  >>> with force("xla"):
  ...   choose(op="nm", candidates={"pallas_gpu": "gpu"}, pattern="2:4",
  ...          dtype="bfloat16", shape=(8, 8), batch=1, platform="gpu").source
  'forced'
  """
  token = _forced.set(implementation)
  try:
    yield
  finally:
    _forced.reset(token)


def forced() -> str | None:
  """The implementation :func:`force` or ``PALLAS_KERNELS_IMPLEMENTATION``
  imposes here, or None.

  An op that leaves unsuitable kernels out of its automatic candidates keeps
  them when one is forced, so that the forced one gets the op's own error.

  >>> with force("xla"):
  ...   forced()
  'xla'
  """
  return _forced.get() or os.environ.get(ENV_FORCE) or None


@contextlib.contextmanager
def autotune(enabled: bool = True):
  """Turns first-use autotuning on (or off) inside the block.

  Overrides ``PALLAS_KERNELS_AUTOTUNE``.

  >>> with autotune():
  ...   _autotune_enabled(None)
  True
  """
  token = _autotune.set(enabled)
  try:
    yield
  finally:
    _autotune.reset(token)


def _autotune_enabled(argument: bool | None) -> bool:
  if argument is not None:
    return argument
  ctx = _autotune.get()
  if ctx is not None:
    return ctx
  return os.environ.get(ENV_AUTOTUNE, "").strip().lower() in (
      "1", "true", "yes", "on")


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


def _resolve(name: str, candidates: Mapping[str, str], platform: str,
             op: str, source: str) -> Choice:
  if name == "xla":
    return Choice("xla", source, source)
  if name == "pallas":
    native = [c for c, p in candidates.items() if p == platform]
    if not native and not candidates:
      raise ValueError(f"op {op!r} has no Pallas implementation.")
    name = native[0] if native else next(iter(candidates))
  elif name not in candidates and name.startswith("pallas_"):
    # "pallas_gpu" / "pallas_tpu": the op's first kernel for that platform.
    on = [c for c, p in candidates.items() if p == name[len("pallas_"):]]
    name = on[0] if on else name
  if name not in candidates:
    raise ValueError(
        f"implementation for op {op!r} must be None, 'xla', 'pallas' or one "
        f"of {sorted(candidates)}, got {name!r} ({source}).")
  return Choice(name, source, source, candidates[name] != platform)


def _measured(rows, key: Key, names) -> dict[str, tuple[float, float]]:
  out = {}
  for r in rows:
    if r["implementation"] in names and Key.of_row(r) == key:
      out[r["implementation"]] = (float(r["us"]), float(r["dense_us"]))
  return out


def _decide(found, key: Key, source: str) -> Choice:
  name, (us, dense_us) = min(found.items(), key=lambda kv: kv[1][0])
  ratio = dense_us / us
  where = (f"{key.op} {key.pattern} {key.dtype} "
           f"{'x'.join(map(str, key.shape))} batch<={key.batch} on "
           f"{key.device_kind}")
  if ratio >= MARGIN:
    return Choice(name, f"measured ({source}): {name} {us:.1f}us vs dense "
                  f"{dense_us:.1f}us ({ratio:.2f}x) for {where}", source)
  return Choice("xla", f"measured ({source}): best kernel {name} at "
                f"{ratio:.2f}x dense (< {MARGIN}) for {where}; dense XLA path",
                source)


def choose(*, op: str, candidates: Mapping[str, str], pattern: str,
           dtype: Any, shape: tuple[int, ...], batch: int,
           implementation: str | None = None, platform: str | None = None,
           measure: Callable[[list[str]], Mapping[str, float]] | None = None,
           autotune: bool | None = None,
           table: str | os.PathLike | None = None,
           cache: str | os.PathLike | None = None) -> Choice:
  """Chooses an op's implementation (see the module docstring for the order).

  Args:
    op: the op's name (e.g. ``"nm"``, ``"block_dsd"``).
    candidates: the op's Pallas implementations, name -> the platform each
      runs natively on (``"gpu"`` or ``"tpu"``). ``"xla"`` (dense fallback)
      and ``"pallas"`` (the candidate native to ``platform``, else the first)
      are always accepted.
    pattern: the sparsity pattern as a string (``"2:4"``, ``"b128/d0.25"``).
    dtype: the weight dtype.
    shape: the weight's dense shape.
    batch: rows of the activation (leading axes multiplied).
    implementation: the caller's explicit choice, or None.
    platform: the backend to decide for (default: the current one).
    measure: for autotuning, a callable taking a list of implementation
      names and returning seconds per call for each of them and for
      ``"dense"`` (XLA ``jnp.dot`` on a dense weight of the same shape); None
      when this call cannot measure (e.g. traced shapes only).
    autotune: overrides :func:`autotune` and ``PALLAS_KERNELS_AUTOTUNE``.
    table: the shipped table's path (default :func:`table_path`).
    cache: the autotune cache's path (default :func:`cache_path`).

  Returns:
    A :class:`Choice`.

  >>> choose(op="nm", candidates={"pallas_gpu": "gpu"}, pattern="2:4",
  ...        dtype="bfloat16", shape=(8, 8), batch=1, implementation="pallas",
  ...        platform="cpu")
  Choice(implementation='pallas_gpu', reason='requested', source='requested', interpret=True)
  """
  platform = platform or jax.default_backend()
  if implementation is not None:
    return _resolve(implementation, candidates, platform, op, "requested")
  imposed = forced()
  if imposed:
    return _resolve(imposed, candidates, platform, op, "forced")
  native = [c for c, p in candidates.items() if p == platform]
  if not native:
    return Choice("xla", f"backend {platform!r} has no native {op} kernel "
                  "(interpret mode is for testing; pass "
                  "implementation='pallas' to force one)", "default")
  kind = device_kind(platform)
  if kind is None:
    return Choice("xla", f"no {platform!r} device in this process to look "
                  "measurements up for; dense XLA path", "default")
  key = Key(kind, op, pattern, jax.numpy.dtype(dtype).name,
            tuple(int(s) for s in shape), batch_bucket(batch))
  cache_file = cache if cache is not None else cache_path(kind)
  found = _measured(load_cache(cache_file, kind), key, native)
  if found:
    return _decide(found, key, "autotune")
  found = _measured(load_table(table), key, native)
  if found:
    return _decide(found, key, "table")
  if _autotune_enabled(autotune) and measure is not None:
    try:
      seconds = measure(native)
    except Exception as e:  # pylint: disable=broad-except
      warnings.warn(f"autotuning {op} {pattern} failed, using the dense XLA "
                    f"path: {type(e).__name__}: {e}", stacklevel=2)
      return Choice("xla", f"autotune failed ({type(e).__name__}); dense XLA "
                    "path", "autotune")
    dense_us = seconds["dense"] * 1e6
    rows = [dict(key.as_dict(), implementation=name, us=seconds[name] * 1e6,
                 dense_us=dense_us) for name in native if name in seconds]
    record(rows, cache_file, kind)
    found = _measured(rows, key, native)
    if found:
      return _decide(found, key, "autotune")
  return Choice(
      "xla", f"no measurement of {op} {pattern} {key.dtype} "
      f"{'x'.join(map(str, key.shape))} batch<={key.batch} on {kind}; dense "
      f"XLA path (measure with `python -m pallas_kernels.device_check "
      f"--write-table` or set {ENV_AUTOTUNE}=1)", "default")
