"""The training input pipeline, on grain: shuffling, repeating, batching.

:func:`train_dataset` turns the training windows of a
:class:`~sparsejax.pretrain.corpus.Corpus` into this process's batches: a
global shuffle (re-seeded by grain for each epoch), repeated forever,
batched. The global batch at step ``t`` is windows ``t * B ... t * B + B - 1``
of that stream, whatever the number of processes; each process loads its
contiguous rows of it, so the global batch array is the same on any process
count. The iterator's state (:func:`train_iterator`) is ``{"next_index": t}``
on every process: a run resumed on another process count sees the batches
an uninterrupted run would have seen.
"""
from __future__ import annotations

from typing import Any

import grain
import jax
import numpy as np

from sparsejax.pretrain import config as config_lib

__all__ = ["process_rows", "train_dataset", "train_iterator"]


def process_rows(batch_size: int, process_count: int, *,
                 name: str = "data.batch_size") -> int:
  """Rows of the global batch that each process loads.

  Args:
    batch_size: The global batch size.
    process_count: Number of processes.
    name: The config key of ``batch_size``, for the error.

  Returns:
    ``batch_size // process_count``.

  Raises:
    ConfigError: ``batch_size`` does not divide over the processes.

  Example:
    >>> process_rows(8, 4)
    2
    >>> process_rows(6, 4)
    Traceback (most recent call last):
    ...
    sparsejax.pretrain.config.ConfigError: data.batch_size=6 does not divide over the 4 processes; use a multiple of 4.
  """
  if batch_size % process_count:
    raise config_lib.ConfigError(
        f"{name}={batch_size} does not divide over the {process_count} "
        f"processes; use a multiple of {process_count}.")
  return batch_size // process_count


def _lm_batch(windows: np.ndarray) -> dict[str, np.ndarray]:
  return {"inputs": windows[:, :-1], "targets": windows[:, 1:]}


def train_dataset(train: Any, *, batch_size: int, seed: int,
                  process_index: int | None = None,
                  process_count: int | None = None) -> grain.MapDataset:
  """This process's batches: shuffled per epoch, repeated, batched by grain.

  Args:
    train: Random-access training windows (``Corpus.train``).
    batch_size: The global batch size.
    seed: Shuffle seed; grain folds in the epoch, so each epoch has its own
      order.
    process_index: Defaults to ``jax.process_index()``.
    process_count: Defaults to ``jax.process_count()``.

  Returns:
    An endless ``grain.MapDataset``; element ``t`` holds this process's rows
    of global batch ``t``: ``int32`` ``"inputs"`` and ``"targets"`` (inputs
    shifted by one) of shape ``(batch_size // process_count, seq_len)``.

  Example:
    >>> from sparsejax.pretrain.corpus import TokenWindows
    >>> ds = train_dataset(TokenWindows(np.arange(100), 4), batch_size=4,
    ...                    seed=0, process_index=0, process_count=1)
    >>> b = ds[0]
    >>> shifted = (b["inputs"][:, 1:] == b["targets"][:, :-1]).all()
    >>> b["inputs"].shape, bool(shifted)
    ((4, 4), True)
  """
  if process_index is None:
    process_index = jax.process_index()
  if process_count is None:
    process_count = jax.process_count()
  per = process_rows(batch_size, process_count)
  if not isinstance(train, grain.MapDataset):
    train = grain.MapDataset.source(train)
  return (train.shuffle(seed).repeat().batch(per, drop_remainder=True)
          [process_index::process_count].map(_lm_batch))


def train_iterator(dataset: grain.MapDataset,
                   state: dict[str, Any] | None = None
                   ) -> grain.DatasetIterator:
  """An iterator over ``dataset`` (prefetching in a thread), at ``state``.

  Args:
    dataset: From :func:`train_dataset`.
    state: A ``get_state()`` of an earlier iterator, or ``None`` to start.

  Returns:
    A grain ``DatasetIterator``; ``get_state()`` is ``{"next_index": t}``
    after ``t`` batches, on every process.

  Example:
    >>> from sparsejax.pretrain.corpus import TokenWindows
    >>> ds = train_dataset(TokenWindows(np.arange(100), 4), batch_size=2,
    ...                    seed=0, process_index=0, process_count=1)
    >>> it = train_iterator(ds)
    >>> _ = next(it); it.get_state()
    {'next_index': 1}
    >>> bool((next(train_iterator(ds, it.get_state()))["inputs"]
    ...       == next(it)["inputs"]).all())
    True
  """
  it = dataset.to_iter_dataset(
      grain.ReadOptions(num_threads=1, prefetch_buffer_size=4)).__iter__()
  if state is not None:
    it.set_state(state)
  return it
