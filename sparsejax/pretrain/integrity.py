"""Checkpoints that verify themselves: a checksum manifest per step.

Orbax's atomic rename guarantees that a step folder is complete when it
appears, but nothing checks its bytes later: the zarr3 codecs it writes
carry a CRC only for the shard index, so flipped bytes in a data file
restore silently, and a truncated or missing file ends a restore in a long
tensorstore traceback. So every step folder holds
:data:`MANIFEST`, the size and BLAKE2b digest of each of its files, written
(atomically) into orbax's temporary folder just before orbax renames it to
the final step folder: a step folder without a manifest did not finish.

:func:`restore_newest_intact` verifies steps newest first and falls back
from a damaged step to the newest intact one with a
:class:`DamagedCheckpointWarning` naming the step and the damage; the
damaged folder is renamed, never deleted (:func:`move_aside`), so that a new
save of that step can be written. If no step is intact it raises one
:class:`CheckpointError` listing what is wrong with each, and changes
nothing.

Every file operation goes through :mod:`etils.epath`, so a checkpoint folder
may be local or on an object store (``gs://...``).
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from typing import Any, Callable

import jax
from etils import epath

from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import paths

__all__ = [
    "MANIFEST",
    "CheckpointError",
    "DamagedCheckpointWarning",
    "write_manifest",
    "verify",
    "move_aside",
    "restore_newest_intact",
]

MANIFEST = "sparsejax_checksums.json"
"""Name of the checksum manifest inside each step folder."""

_CHUNK = 1 << 20

_REWRITTEN = ("_CHECKPOINT_METADATA",)
"""Orbax rewrites these after the rename (adding the commit time): they are
checked to be a JSON object, not checksummed."""


class CheckpointError(config_lib.ConfigError):
  """A workdir whose checkpoints exist but none of which is intact."""


class DamagedCheckpointWarning(UserWarning):
  """A damaged checkpoint was skipped in favour of an older intact one."""


def _digest(path: epath.Path) -> str:
  h = hashlib.blake2b(digest_size=32)
  with path.open("rb") as f:
    while chunk := f.read(_CHUNK):
      h.update(chunk)
  return h.hexdigest()


def _files(step_dir: epath.Path) -> list[str]:
  """Paths of the files under ``step_dir``, relative, ``/``-separated."""
  out, depth = [], None
  for root, _, names in step_dir.walk():  # top-down: step_dir comes first
    # Backends may spell a root differently from step_dir (``gs:/`` for
    # ``gs://``), so the relative part is taken from the walk's own roots.
    parts = epath.Path(root).parts
    depth = len(parts) if depth is None else depth
    for name in names:
      rel = "/".join((*parts[depth:], name))
      if rel not in (MANIFEST, MANIFEST + ".tmp"):
        out.append(rel)
  return sorted(out)


def write_manifest(step_dir: str | os.PathLike) -> dict[str, Any]:
  """Records the size and digest of every file of a step folder.

  Writes :data:`MANIFEST` atomically (a temporary file, then a rename).

  Args:
    step_dir: A checkpoint step folder (final or orbax's temporary one).

  Returns:
    The manifest: ``{"algorithm", "files": {relative path: {"size",
    "blake2b"}}}``.

  Example:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, "a"), "wb") as f:
    ...   _ = f.write(b"abc")
    >>> write_manifest(d)["files"]["a"]["size"]
    3
    >>> sorted(os.listdir(d))
    ['a', 'sparsejax_checksums.json']
  """
  step_dir = epath.Path(step_dir)
  names = _files(step_dir)
  files = {rel: {"size": step_dir.joinpath(rel).stat().length,
                 "blake2b": _digest(step_dir.joinpath(rel))}
           for rel in names if rel not in _REWRITTEN}
  manifest = {"algorithm": "blake2b-256", "files": files,
              "json": [rel for rel in names if rel in _REWRITTEN]}
  paths.write_text_atomic(step_dir / MANIFEST,
                          json.dumps(manifest, indent=1, sort_keys=True))
  return manifest


def verify(step_dir: str | os.PathLike) -> list[str]:
  """What is wrong with a step folder, checked against its manifest.

  Args:
    step_dir: A checkpoint step folder.

  Returns:
    One line per problem (a missing folder or file, a truncated or empty
    file, a checksum mismatch, a missing or unreadable manifest); empty when
    the folder is intact.

  Example:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(d, "state"))
    >>> for name, data in (("state/x", b"12345678"), ("meta", b"{}")):
    ...   with open(os.path.join(d, name), "wb") as f:
    ...     _ = f.write(data)
    >>> _ = write_manifest(d)
    >>> verify(d)
    []
    >>> with open(os.path.join(d, "state/x"), "r+b") as f:
    ...   _ = f.write(b"X")
    >>> open(os.path.join(d, "meta"), "w").close()
    >>> verify(d)
    ['meta is empty (2 bytes expected)', 'state/x checksum mismatch (its bytes changed)']
  """
  step_dir = epath.Path(step_dir)
  if not step_dir.is_dir():
    return ["the step folder is missing"]
  path = step_dir / MANIFEST
  if not path.exists():
    return [f"it has no checksum manifest {MANIFEST} (its save did not "
            "finish, or it was written before checksums were recorded)"]
  try:
    with path.open() as f:
      manifest = json.load(f)
    files, json_files = manifest["files"], manifest.get("json", [])
  except (OSError, ValueError, KeyError, TypeError) as e:
    return [f"its checksum manifest {MANIFEST} is unreadable ({e})"]
  problems = [p for rel in json_files if (p := _json_problem(step_dir, rel))]
  gone = set()
  for rel, want in sorted(files.items()):
    full = step_dir.joinpath(*rel.split("/"))
    if not full.exists():
      parts = rel.split("/")
      top = next((i for i in range(1, len(parts)) if not step_dir.joinpath(
          *parts[:i]).is_dir()), None)
      if top is None:
        problems.append(f"{rel} is missing")
      elif "/".join(parts[:top]) not in gone:
        gone.add("/".join(parts[:top]))
        problems.append(f"folder {'/'.join(parts[:top])} is missing")
      continue
    size = full.stat().length
    if size != want["size"]:
      problems.append(
          f"{rel} is empty ({want['size']} bytes expected)" if size == 0 else
          f"{rel} is truncated ({size} of {want['size']} bytes)"
          if size < want["size"] else
          f"{rel} has {size} bytes, {want['size']} expected")
    elif _digest(full) != want["blake2b"]:
      problems.append(f"{rel} checksum mismatch (its bytes changed)")
  return problems


def _json_problem(step_dir: epath.Path, rel: str) -> str | None:
  """What is wrong with a JSON metadata file, or ``None``."""
  try:
    text = step_dir.joinpath(*rel.split("/")).read_text()
  except OSError:
    return f"{rel} is missing"
  if not text.strip():
    return f"{rel} is empty"
  try:
    if isinstance(json.loads(text), dict):
      return None
    return f"{rel} is not a JSON object"
  except ValueError as e:
    return f"{rel} is not valid JSON ({e})"


def move_aside(step_dir: str | os.PathLike) -> str:
  """Renames a damaged step folder to ``<step>.damaged[-k]`` (kept, ignored).

  Only process 0 renames; the others return the name it will have.

  Args:
    step_dir: A checkpoint step folder.

  Returns:
    The new path.

  Example:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> for _ in range(2):
    ...   os.makedirs(os.path.join(d, "40"))
    ...   print(os.path.basename(move_aside(os.path.join(d, "40"))))
    40.damaged
    40.damaged-2
  """
  step_dir = epath.Path(step_dir)
  target, k = step_dir.with_name(step_dir.name + ".damaged"), 1
  while target.exists():
    k += 1
    target = step_dir.with_name(f"{step_dir.name}.damaged-{k}")
  if jax.process_index() == 0:
    step_dir.rename(target)
  return os.fspath(target)


def restore_newest_intact(directory: str | os.PathLike, steps: list[int],
                          restore: Callable[[int], Any]
                          ) -> tuple[int, Any] | None:
  """Restores the newest step that verifies and that orbax can read.

  Each damaged step newer than the one restored is reported with a
  :class:`DamagedCheckpointWarning` and moved aside (:func:`move_aside`).

  Args:
    directory: The checkpoint folder.
    steps: Its step folders' steps, in any order.
    restore: Restores one step (e.g. with orbax); any exception it raises
      counts as damage of that step.

  Returns:
    ``(step, restore(step))``, or ``None`` when there are no steps.

  Raises:
    CheckpointError: No step is intact; lists each step's damage, and
      nothing was changed.

  Example:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> for step in (20, 40):
    ...   os.makedirs(os.path.join(d, str(step)))
    ...   _ = write_manifest(os.path.join(d, str(step)))
    >>> restore_newest_intact(d, [20, 40], lambda step: f"state {step}")
    (40, 'state 40')
    >>> os.remove(os.path.join(d, "40", MANIFEST))
    >>> with warnings.catch_warnings(record=True) as seen:
    ...   restore_newest_intact(d, [20, 40], lambda step: f"state {step}")
    (20, 'state 20')
    >>> print(seen[0].message)
    checkpoint step 40 is damaged: it has no checksum manifest ...; resuming from step 20 (the damaged folder is kept as .../40.damaged)
    >>> restore_newest_intact(d, [20], lambda step: 1 / 0)
    Traceback (most recent call last):
    ...
    sparsejax.pretrain.integrity.CheckpointError: no intact checkpoint in ...: step 20: orbax could not restore it (ZeroDivisionError: division by zero). ...
  """
  directory = epath.Path(directory)
  damaged = []
  for step in sorted(steps, reverse=True):
    problems = verify(directory / str(step))
    if not problems:
      try:
        value = restore(step)
      except Exception as e:  # pylint: disable=broad-except
        first = (str(e).strip().splitlines() or [""])[0][:300]
        problems = [f"orbax could not restore it ({type(e).__name__}: "
                    f"{first})"]
    if not problems:
      for bad, why in damaged:
        kept = move_aside(directory / str(bad))
        warnings.warn(
            f"checkpoint step {bad} is damaged: {'; '.join(why)}; resuming "
            f"from step {step} (the damaged folder is kept as {kept})",
            DamagedCheckpointWarning, stacklevel=3)
      return step, value
    damaged.append((step, problems))
  if not damaged:
    return None
  raise CheckpointError(
      f"no intact checkpoint in {directory}: " + "; ".join(
          f"step {step}: {', '.join(why)}" for step, why in damaged) +
      ". Nothing was changed; move the damaged step folders aside (or use "
      "a new --workdir) to start over.")
