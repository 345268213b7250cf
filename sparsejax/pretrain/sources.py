"""The configured data sources of a run: ``data.source`` as a Corpus.

``pydoc`` (the embedded help text) and ``files`` (the user's text files) are
byte-level token arrays cut into windows
(:class:`~sparsejax.pretrain.corpus.TokenWindows`); ``array_record`` reads
stored windows. Any other random-access source enters through
:func:`~sparsejax.pretrain.corpus.make_corpus` and ``plan(corpus=...)``.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np

from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import corpus as corpus_lib
from sparsejax.pretrain import data as data_lib
from sparsejax.pretrain import pipeline

__all__ = ["load_corpus", "check_corpus"]


def _paths(config: Any) -> list[str]:
  return [p.strip() for p in config.data.paths.split(",") if p.strip()]


def _joined(windows: Any, start: int) -> np.ndarray:
  """The tokens of ``windows[start:]`` as one array: consecutive windows of a
  text share a token (the last of one is the first of the next)."""
  parts = [np.asarray(windows[i])[:-1] for i in range(start, len(windows))]
  if not parts:
    return np.zeros(0, np.int32)
  return np.concatenate(parts + [np.asarray(windows[len(windows) - 1])[-1:]])


def load_corpus(config: Any) -> corpus_lib.Corpus:
  """The training windows and validation tokens of ``config.data``.

  ``pydoc`` and ``files`` are byte-level texts split into a training head
  and a validation tail; ``array_record`` reads one window per record
  (:func:`~sparsejax.pretrain.corpus.array_record_windows`) and holds out
  the last ``data.val_fraction`` of the records, joined into validation
  tokens as consecutive windows of one text.

  Args:
    config: The run's ``ConfigDict``.

  Returns:
    The :class:`~sparsejax.pretrain.corpus.Corpus`.

  Raises:
    ConfigError: Unreadable files, or too little data for one batch.

  Example:
    >>> c = load_corpus(config_lib.get_config())
    >>> c.kind, len(c.val_tokens) / (len(c.train.tokens) + len(c.val_tokens))
    ('pydoc', 0.1...)
  """
  d = config.data
  try:
    if d.source == "array_record":
      windows = corpus_lib.array_record_windows(_paths(config))
      cut = len(windows) - int(round(len(windows) * d.val_fraction))
      train, val = windows[:cut], _joined(windows, cut)
    else:
      tokens = (data_lib.encode(data_lib.pydoc_corpus()) if d.source == "pydoc"
                else data_lib.text_files(_paths(config)))
      tokens, val = data_lib.train_val_split(tokens, d.val_fraction)
      train = corpus_lib.TokenWindows(tokens, d.seq_len)
  except (OSError, ValueError, RuntimeError) as e:
    raise config_lib.ConfigError(f"data.paths: {e}") from None
  corpus = corpus_lib.make_corpus(train, val, seq_len=d.seq_len,
                                  kind=d.source, vocab_size=data_lib.VOCAB_SIZE)
  check_corpus(corpus, config)
  return corpus


def check_corpus(corpus: corpus_lib.Corpus, config: Any) -> None:
  """Refuses a corpus that cannot feed ``config``'s batches.

  Args:
    corpus: The run's data.
    config: The run's ``ConfigDict``.

  Raises:
    ConfigError: Another ``seq_len``, fewer training windows than one
      global batch, or a global batch that does not divide over the
      processes.

  Example:
    >>> cfg = config_lib.get_config()
    >>> windows = corpus_lib.TokenWindows(np.arange(200), 64)
    >>> small = corpus_lib.make_corpus(windows, np.arange(100), seq_len=64)
    >>> check_corpus(small, cfg)
    Traceback (most recent call last):
    ...
    sparsejax.pretrain.config.ConfigError: the training data (source 'custom') gives only 3 windows of 65 tokens; data.batch_size=32 needs more data or a shorter data.seq_len.
  """
  d = config.data
  if corpus.seq_len != d.seq_len:
    raise config_lib.ConfigError(
        f"the data source {corpus.kind!r} has windows of {corpus.seq_len + 1} "
        f"tokens but data.seq_len={d.seq_len}.")
  n = len(corpus.train)
  if n < d.batch_size:
    raise config_lib.ConfigError(
        f"the training data (source {corpus.kind!r}) gives only {n} windows "
        f"of {d.seq_len + 1} tokens; data.batch_size={d.batch_size} needs "
        "more data or a shorter data.seq_len.")
  pipeline.process_rows(d.batch_size, jax.process_count())
