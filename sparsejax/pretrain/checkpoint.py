"""Checkpoints of a pretraining run, with orbax ``CheckpointManager``.

A checkpoint holds the whole :class:`~sparsejax.pretrain.step.TrainState`
(step, params, optimizer state -- which carries the masks and the sparsifier
state -- and the PRNG key) plus a small JSON item with the step and the data
state: the grain iterator's state and the fingerprint of the data it reads
(:func:`~sparsejax.pretrain.corpus.data_fingerprint`). Restoring both and
running on gives exactly the params of a run that was never interrupted.

Saves are asynchronous (training continues while a checkpoint is written)
and atomic: orbax writes into ``<step>.orbax-checkpoint-tmp-*`` and renames
the folder when complete, so a run killed mid-save leaves a temporary folder
that is ignored, and the next run resumes from the last complete step. Only
the last ``keep`` checkpoints are kept.

Each step folder holds checksums (:mod:`~sparsejax.pretrain.integrity`);
:meth:`Checkpointer.restore_latest` verifies them, skipping damaged steps.

Restoring onto a different mesh works: the target's shardings decide where
each array is placed, whatever mesh wrote it.

The run's config is stored next to the checkpoints (``config.json`` in the
workdir); :func:`check_workdir` refuses a workdir written by an incompatible
config before anything is computed or written: every key but
:data:`RESUME_FREE` must be equal (:func:`resume_fields`).
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import integrity
from sparsejax.pretrain import paths

__all__ = [
    "CONFIG_FILE",
    "RESUME_FREE",
    "resume_fields",
    "drop_free",
    "Checkpointer",
    "check_workdir",
    "write_config",
    "finished_steps",
]

CONFIG_FILE = "config.json"

RESUME_FREE = ("mesh", "checkpoint", "log_every", "eval", "outputs",
               "distributed", "progress", "sparsity.baseline",
               "train.max_nonfinite_steps")
"""Keys (sections or dotted keys) that may change between a run and its
resumption: they do not shape the trajectory of an arm's params."""


def resume_fields(config: Any) -> dict[str, Any]:
  """The part of a config that a resumed run must share with the original.

  Everything but :data:`RESUME_FREE` (mesh, checkpointing, logging,
  evaluation, outputs) determines the trajectory of the parameters.

  Args:
    config: A ``ConfigDict``.

  Returns:
    A plain dict.

  Example:
    >>> fields = resume_fields(config_lib.get_config())
    >>> "mesh" in fields, "model" in fields
    (False, True)
  """
  return drop_free(config_lib.to_dict(config))


def drop_free(tree: dict[str, Any]) -> dict[str, Any]:
  """Removes the :data:`RESUME_FREE` keys from a config dict.

  Args:
    tree: A plain dict of a config.

  Returns:
    A copy without the free keys.

  Example:
    >>> sorted(drop_free({"mesh": 1, "sparsity": {"baseline": 1, "c": 2}}))
    ['sparsity']
  """
  out = json.loads(json.dumps(tree))
  for key in RESUME_FREE:
    *parents, leaf = key.split(".")
    node = out
    for p in parents:
      node = node.get(p, {}) if isinstance(node, dict) else {}
    if isinstance(node, dict):
      node.pop(leaf, None)
  return out


def finished_steps(directory: str | os.PathLike) -> list[int]:
  """Steps of the complete checkpoints in ``directory`` (no writes).

  Temporary folders of an interrupted save are not counted.

  Args:
    directory: A checkpoint folder (may not exist; any ``etils.epath``
      path).

  Returns:
    Sorted steps.

  Example:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(d, "4"))
    >>> os.makedirs(os.path.join(d, "8.orbax-checkpoint-tmp-1234"))
    >>> finished_steps(d)
    [4]
  """
  folder = paths.as_path(directory)
  if not folder.is_dir():
    return []
  return sorted(int(p.name) for p in folder.iterdir()
                if p.name.isdigit() and p.is_dir())


def check_workdir(workdir: str | os.PathLike, config: Any) -> bool:
  """Refuses a workdir that holds a run of an incompatible config.

  Compares the stored ``config.json`` with ``config`` on every key that
  shapes the trajectory (:func:`resume_fields`);
  mesh, checkpointing, logging, evaluation and outputs may differ.

  Args:
    workdir: The run's folder (may not exist).
    config: The new run's ``ConfigDict``.

  Returns:
    ``True`` if the workdir holds a compatible run to resume, ``False`` if it
    holds none.

  Raises:
    ConfigError: Listing the keys that differ.

  Example:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> cfg = config_lib.get_config()
    >>> check_workdir(d, cfg)
    False
    >>> write_config(d, cfg)
    >>> check_workdir(d, cfg)
    True
    >>> cfg.model.d_model = 64
    >>> check_workdir(d, cfg)
    Traceback (most recent call last):
    ...
    sparsejax.pretrain.config.ConfigError: workdir ... model.d_model: 128 -> 64...
  """
  path = paths.as_path(workdir) / CONFIG_FILE
  if not path.exists():
    found = [d for d in ("dense", "sparse") if finished_steps(
        path.parent / d / "checkpoints")]
    if found:
      raise config_lib.ConfigError(
          f"workdir {os.fspath(workdir)} holds checkpoints ({', '.join(found)})"
          f" but no {CONFIG_FILE}, so their config is unknown; use a new "
          "--workdir (nothing was written).")
    return False
  try:
    with path.open() as f:
      stored = json.load(f)
  except (OSError, ValueError) as e:
    raise config_lib.ConfigError(
        f"{path} is unreadable ({e}); use another --workdir.") from None
  old = drop_free(stored)
  new = resume_fields(config)
  diffs = []

  def walk(a, b, prefix):
    for key in sorted(set(a) | set(b)):
      va, vb = a.get(key, "<missing>"), b.get(key, "<missing>")
      if isinstance(va, dict) and isinstance(vb, dict):
        walk(va, vb, prefix + key + ".")
      elif va != vb:
        diffs.append(f"{prefix}{key}: {va!r} -> {vb!r}")

  walk(old, new, "")
  if diffs:
    raise config_lib.ConfigError(
        f"workdir {os.fspath(workdir)} holds a run with a different config; "
        f"resuming it with this config is not possible. Differences: "
        f"{'; '.join(diffs)}. Use a new --workdir (nothing was written).")
  return True


def write_config(workdir: str | os.PathLike, config: Any) -> None:
  """Writes ``config.json`` into ``workdir`` (process 0 only).

  Args:
    workdir: The run's folder (created if needed; any ``etils.epath``
      path).
    config: The run's ``ConfigDict``.

  Example:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> write_config(d, config_lib.get_config())
    >>> sorted(os.listdir(d))
    ['config.json']
  """
  if jax.process_index() != 0:
    return
  folder = paths.as_path(workdir)
  folder.mkdir(parents=True, exist_ok=True)
  paths.write_text_atomic(folder / CONFIG_FILE, json.dumps(
      config_lib.to_dict(config), indent=2, sort_keys=True))


def _checked_data(data_state: Any, step: int) -> dict[str, Any]:
  """``data_state`` if it has the saved structure, else a ValueError."""
  ok = (isinstance(data_state, dict)
        and isinstance(data_state.get("fingerprint"), dict)
        and isinstance(data_state.get("iterator"), dict)
        and isinstance(data_state["iterator"].get("next_index"), int)
        and data_state["iterator"]["next_index"] >= 0)
  if not ok:
    raise ValueError(
        f"the data state of step {step} is damaged: expected {{'iterator': "
        f"{{'next_index': int >= 0, ...}}, 'fingerprint': {{...}}}}, got "
        f"{data_state!r:.200}")
  return data_state


class Checkpointer:
  """Saves and restores a train state and its data state.

  Args:
    directory: Checkpoint folder (created on first use): a local folder
      (kept as its absolute path in the attribute ``directory``, a ``str``)
      or any ``etils.epath`` path such as ``gs://bucket/run/checkpoints``.
    keep: Number of most recent checkpoints to keep.
    async_save: Write checkpoints in the background.

  Example:
    >>> import tempfile
    >>> ckpt = Checkpointer(tempfile.mkdtemp(), keep=2, async_save=False)
    >>> state = {"w": jnp.arange(3.0)}
    >>> for step in (1, 2, 3):
    ...   ckpt.save(step, state, {"iterator": {"next_index": step},
    ...                           "fingerprint": {"seed": 0}})
    >>> ckpt.steps()
    [2, 3]
    >>> restored, data_state = ckpt.restore(3, jax.eval_shape(lambda: state))
    >>> restored["w"].tolist(), data_state["iterator"]
    ([0.0, 1.0, 2.0], {'next_index': 3})
    >>> ckpt.saved_data(3)["fingerprint"]
    {'seed': 0}
    >>> import warnings
    >>> os.remove(os.path.join(ckpt.directory, "3", "meta", "metadata"))
    >>> with warnings.catch_warnings(record=True) as seen:
    ...   step, restored, data_state = ckpt.restore_latest(
    ...       jax.eval_shape(lambda: state))
    >>> step, ckpt.steps(), str(seen[0].message)
    (2, [2], 'checkpoint step 3 is damaged: meta/metadata is missing; ...')
    >>> ckpt.close()
  """

  def __init__(self, directory: str | os.PathLike, *, keep: int = 2,
               async_save: bool = True):
    self.directory = os.fspath(paths.as_path(directory))
    self._async = async_save
    self._pending = None
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True,
        enable_async_checkpointing=async_save,
        async_options=ocp.options.AsyncOptions(
            post_finalization_callback=self._write_manifest)
        if async_save else None)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def _write_manifest(self) -> None:
    """Checksums the step being saved, in orbax's temporary folder before
    its rename (asynchronous saves) or in the final folder (synchronous)."""
    if jax.process_index() != 0:
      return
    folder = paths.as_path(self.directory)
    tmp = list(folder.glob(f"{self._pending}.orbax-checkpoint-tmp*"))
    integrity.write_manifest(tmp[0] if len(tmp) == 1 else
                             folder / str(self._pending))

  def steps(self) -> list[int]:
    """Steps of the complete checkpoints, oldest first."""
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    """The newest complete checkpoint's step, or ``None``."""
    return self._manager.latest_step()

  def save(self, step: int, state: Any, data_state: dict[str, Any],
           *, extra: dict[str, Any] | None = None) -> None:
    """Starts saving ``state`` and the data state as checkpoint ``step``.

    Args:
      step: The number of completed training steps.
      state: A pytree of ``jax.Array``.
      data_state: ``{"iterator": grain iterator state, "fingerprint": ...}``
        after ``step`` batches (JSON-compatible).
      extra: More JSON-compatible metadata.
    """
    meta = {"step": int(step), "data_state": _checked_data(data_state, step)}
    meta.update(extra or {})
    self._manager.wait_until_finished()  # As orbax would: one save at a time.
    self._pending = int(step)
    self._manager.save(
        int(step), force=True,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                meta=ocp.args.JsonSave(meta)))
    if not self._async:
      self._write_manifest()

  def restore(self, step: int, target: Any) -> tuple[Any, dict[str, Any]]:
    """Restores checkpoint ``step`` onto ``target``'s shapes and shardings.

    Args:
      step: A step from :meth:`steps`.
      target: A pytree of ``jax.ShapeDtypeStruct`` (with ``sharding`` to
        place the arrays, e.g. on another mesh) or of arrays.

    Returns:
      ``(state, data_state)``.

    Raises:
      ValueError: The data state is damaged (not the saved structure).
    """
    out = self._manager.restore(
        int(step),
        args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                meta=ocp.args.JsonRestore()))
    return out["state"], _checked_data(out["meta"].get("data_state"), step)

  def saved_data(self, step: int) -> dict[str, Any]:
    """The data state of checkpoint ``step`` alone (no arrays are read).

    Raises:
      ValueError: The data state is damaged.
    """
    out = self._manager.restore(
        int(step), args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return _checked_data(out["meta"].get("data_state"), step)

  def restore_latest(self, target: Any
                     ) -> tuple[int, Any, dict[str, Any]] | None:
    """Restores the newest intact checkpoint (checksums verified).

    Damaged newer steps are skipped with a warning naming the step and the
    damage, and renamed (:func:`integrity.restore_newest_intact`).

    Args:
      target: As for :meth:`restore`.

    Returns:
      ``(step, state, data_state)``, or ``None`` without checkpoints.

    Raises:
      integrity.CheckpointError: Checkpoints exist but none is intact.
    """
    found = integrity.restore_newest_intact(
        self.directory, finished_steps(self.directory),
        lambda step: self.restore(step, target))
    if found is None:
      return None
    self._manager.reload()  # Forget the steps moved aside.
    step, (state, data_state) = found
    return step, state, data_state

  def wait(self) -> None:
    """Blocks until background saves have finished."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()
