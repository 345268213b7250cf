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
with a warning. The keys live in :mod:`pallas_kernels._dispatch_keys`, the
table and cache files in :mod:`pallas_kernels._dispatch_store`; both are
re-exported here.

>>> c = choose(op="nm", candidates={"pallas_gpu": "gpu"}, pattern="2:4",
...            dtype="bfloat16", shape=(4096, 4096), batch=1, platform="cpu")
>>> c.implementation, c.source
('xla', 'default')
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax

from pallas_kernels._dispatch_keys import batch_bucket
from pallas_kernels._dispatch_keys import DENSITY_BUCKETS
from pallas_kernels._dispatch_keys import density_bucket
from pallas_kernels._dispatch_keys import device_kind
from pallas_kernels._dispatch_keys import Key
from pallas_kernels._dispatch_store import cache_path
from pallas_kernels._dispatch_store import check_rows
from pallas_kernels._dispatch_store import ENV_CACHE_DIR
from pallas_kernels._dispatch_store import load_cache
from pallas_kernels._dispatch_store import load_table
from pallas_kernels._dispatch_store import merge_rows
from pallas_kernels._dispatch_store import record
from pallas_kernels._dispatch_store import SCHEMA
from pallas_kernels._dispatch_store import table_path
from pallas_kernels._dispatch_store import write_rows

__all__ = ["Choice", "Key", "choose", "force", "forced", "autotune",
           "batch_bucket", "density_bucket", "DENSITY_BUCKETS", "device_kind",
           "load_table", "load_cache", "record", "cache_path", "table_path",
           "merge_rows", "write_rows", "check_rows", "MARGIN", "SCHEMA",
           "ENV_AUTOTUNE", "ENV_CACHE_DIR", "ENV_FORCE"]

MARGIN = 1.03
"""A kernel is chosen only if ``dense_us / kernel_us >= MARGIN``."""
ENV_AUTOTUNE = "PALLAS_KERNELS_AUTOTUNE"
ENV_FORCE = "PALLAS_KERNELS_IMPLEMENTATION"

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
  # table_path is looked up here, so that it can be pointed elsewhere.
  found = _measured(load_table(table if table is not None else table_path()),
                    key, native)
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
