"""Damaged checkpoints and metrics files: each case damages a fresh copy of a
tiny saved checkpoint folder (or a metrics file) and resumes; the warning or
error must name the step and the damage."""

import atexit
import functools
import os
import shutil
import tempfile

import jax
import pytest

from sparsejax.pretrain import checkpoint as ckpt_lib
from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import integrity
from sparsejax.pretrain import metrics as metrics_lib
from tests import checkpoint_damage as damage
from tests.battery.cases import case, check_case, params

Damaged = integrity.DamagedCheckpointWarning
FALLBACK = r"resuming from step 2"


@functools.lru_cache(maxsize=None)
def _saved() -> str:
  """Steps 1, 2, 3 of a tiny state, saved once per test session (removed
  when the session ends)."""
  directory = tempfile.mkdtemp(prefix="battery-ckpt-")
  atexit.register(shutil.rmtree, directory, True)
  return damage.save_tiny(directory)


def _resume(*damages):
  """Copies the saved folder, applies `(how, step, path)` damages (path
  relative to the step folder; "data" is its largest data file), and
  restores the newest intact step (the copy is removed afterwards)."""
  with tempfile.TemporaryDirectory(prefix="battery-damaged-") as parent:
    directory = os.path.join(parent, "c")
    shutil.copytree(_saved(), directory)
    for how, step, rel in damages:
      step_dir = os.path.join(directory, str(step))
      path = (damage.data_files(step_dir)[0] if rel == "data"
              else os.path.join(step_dir, rel))
      how(path)
    ckpt = ckpt_lib.Checkpointer(directory, keep=4, async_save=False)
    try:
      return ckpt.restore_latest(jax.eval_shape(lambda: damage.tiny_state(0)))
    finally:
      ckpt.close()


def _garbage(path):
  with open(path, "w") as f:
    f.write("{not json")


def _unseen(path):
  """Damage before the checksums were taken (`path` is `<step>/state/...`):
  orbax itself must fail."""
  damage.remove(path)
  integrity.write_manifest(os.path.dirname(os.path.dirname(path)))


def _new_empty_step(path):
  os.makedirs(path)


def _metrics(text, resume_step=6):
  with tempfile.TemporaryDirectory(prefix="battery-metrics-") as parent:
    path = os.path.join(parent, "metrics.jsonl")
    with open(path, "w") as f:
      f.write(text)
    metrics_lib.MetricsWriter(path, resume_step=resume_step).close()


LINES = '{"step": 2}\n{"step": 4}\n{"step": 6}\n'

CASES = [
    case("flipped-data-bytes", lambda: _resume((damage.flip, 3, "data")),
         Damaged, r"checkpoint step 3 is damaged",
         r"state/(.*/)?d/\w+ checksum mismatch", FALLBACK),
    case("flipped-array-metadata",
         lambda: _resume((damage.flip, 3, "state/_METADATA")), Damaged,
         r"step 3", r"state/_METADATA checksum mismatch", FALLBACK),
    case("truncated-data", lambda: _resume((damage.truncate, 3, "data")),
         Damaged, r"step 3", r"truncated \(\d+ of \d+ bytes\)", FALLBACK),
    case("grown-data", lambda: _resume((damage.append, 3, "data")), Damaged,
         r"step 3", r"has \d+ bytes, \d+ expected", FALLBACK),
    case("empty-array-metadata",
         lambda: _resume((damage.empty, 3, "state/_METADATA")), Damaged,
         r"step 3", r"state/_METADATA is empty \(\d+ bytes expected\)",
         FALLBACK),
    case("empty-step-metadata",
         lambda: _resume((damage.empty, 3, "_CHECKPOINT_METADATA")), Damaged,
         r"step 3", r"_CHECKPOINT_METADATA is empty", FALLBACK),
    case("garbage-step-metadata",
         lambda: _resume((_garbage, 3, "_CHECKPOINT_METADATA")), Damaged,
         r"step 3", r"_CHECKPOINT_METADATA is not valid JSON", FALLBACK),
    case("missing-state-folder",
         lambda: _resume((damage.remove, 3, "state")), Damaged, r"step 3",
         r"folder state is missing", FALLBACK),
    case("missing-meta-file",
         lambda: _resume((damage.remove, 3, "meta/metadata")), Damaged,
         r"step 3", r"meta/metadata is missing", FALLBACK),
    case("missing-ocdbt-manifest",
         lambda: _resume((damage.remove, 3, "state/manifest.ocdbt")), Damaged,
         r"step 3", r"state/manifest.ocdbt is missing", FALLBACK),
    case("missing-checksums",
         lambda: _resume((damage.remove, 3, integrity.MANIFEST)), Damaged,
         r"step 3", r"no checksum manifest", r"did not finish", FALLBACK),
    case("empty-checksums",
         lambda: _resume((damage.empty, 3, integrity.MANIFEST)), Damaged,
         r"step 3", r"checksum manifest .* is unreadable", FALLBACK),
    case("empty-newer-step-folder",
         lambda: _resume((_new_empty_step, 4, "")), Damaged,
         r"checkpoint step 4 is damaged", r"no checksum manifest",
         r"resuming from step 3"),
    case("damage-unseen-by-checksums",
         lambda: _resume((_unseen, 3, "state/_METADATA")), Damaged,
         r"step 3", r"orbax could not restore it \(\w+", FALLBACK),
    case("two-damaged-steps",
         lambda: _resume((damage.flip, 3, "data"),
                         (damage.truncate, 2, "data")), Damaged,
         r"step 3 is damaged", r"step 2 is damaged: .*truncated",
         r"resuming from step 1"),
    case("no-intact-step",
         lambda: _resume((damage.flip, 3, "data"),
                         (damage.remove, 2, "state"),
                         (damage.empty, 1, "state/_METADATA")),
         integrity.CheckpointError, r"no intact checkpoint in ",
         r"step 3: .*checksum mismatch", r"step 2: folder state is missing",
         r"step 1: state/_METADATA is empty", r"Nothing was changed"),
    case("torn-last-metrics-line",
         lambda: _metrics(LINES + '{"step": 8, "lo'),
         metrics_lib.TornMetricsWarning, r"metrics.jsonl line 4 is torn",
         r"dropped it", r"kept in .*metrics.jsonl.torn"),
    case("corrupt-middle-metrics-line",
         lambda: _metrics('{"step": 2}\n{"step": 4,,}\n{"step": 6}\n'),
         config_lib.ConfigError, r"metrics.jsonl line 2 is corrupt",
         r"only a torn last line"),
    case("non-record-middle-metrics-line",
         lambda: _metrics('{"step": 2}\n[4]\n{"step": 6}\n'),
         config_lib.ConfigError, r"line 2 is corrupt",
         r"not a JSON object with a step"),
]


@pytest.mark.parametrize("c", params(CASES))
def test_checkpoint_fault(c):
  check_case(c)
