"""Damaged checkpoints for the fault tests: a tiny saved checkpoint folder
and the ways a disk, a copy or a killed process can damage it."""

import glob
import os
import shutil

import jax.numpy as jnp

from sparsejax.pretrain import checkpoint as ckpt_lib

STEPS = (1, 2, 3)


def tiny_state(step):
  """The pytree saved at `step`: two arrays whose values name the step."""
  return {"fc1": {"kernel": jnp.full((16, 8), float(step))},
          "bias": jnp.arange(8.0) + step}


def data_state(step):
  """The data state saved at `step`: the iterator past `10 * step` batches."""
  return {"iterator": {"next_index": 10 * step},
          "fingerprint": {"source": "tiny", "seed": 0}}


def save_tiny(directory, steps=STEPS):
  """Saves `tiny_state(step)` for each step (asynchronously, keep all)."""
  ckpt = ckpt_lib.Checkpointer(directory, keep=len(steps) + 1,
                               async_save=True)
  for step in steps:
    ckpt.save(step, tiny_state(step), data_state(step))
  ckpt.close()
  return os.fspath(directory)


def data_files(step_dir):
  """The array data files of a step (tensorstore chunks), largest first."""
  files = glob.glob(os.path.join(step_dir, "state", "**", "d", "*"),
                    recursive=True)
  return sorted(files, key=lambda p: -os.path.getsize(p))


def flip(path, count=64):
  """Inverts `count` bytes in the middle of a file."""
  with open(path, "r+b") as f:
    data = bytearray(f.read())
    start = max(0, len(data) // 2 - count // 2)
    for i in range(start, min(len(data), start + count)):
      data[i] ^= 0xFF
    f.seek(0)
    f.write(data)


def truncate(path):
  """Cuts a file to half its length."""
  os.truncate(path, os.path.getsize(path) // 2)


def empty(path):
  """Empties a file."""
  open(path, "w").close()


def remove(path):
  """Removes a file or a folder."""
  if os.path.isdir(path):
    shutil.rmtree(path)
  else:
    os.remove(path)


def append(path, text=b"junk"):
  """Appends bytes to a file."""
  with open(path, "ab") as f:
    f.write(text)
