"""The data of a run: random-access windows, validation tokens, fingerprint.

A :class:`Corpus` holds a random-access source of training *windows* (1-D
integer arrays of ``seq_len + 1`` tokens; any grain ``RandomAccessDataSource``
or ``grain.MapDataset``), the validation tokens, and a fingerprint of the
source. :class:`TokenWindows` cuts a token array into windows;
:func:`array_record_windows` reads them from ArrayRecord files;
:func:`make_corpus` checks any other source (the hook for one's own data).

A checkpoint stores :func:`data_fingerprint` beside the grain iterator state;
:func:`check_fingerprint` refuses to resume on other data.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import grain
import numpy as np

from sparsejax.pretrain import config as config_lib

__all__ = [
    "TokenWindows",
    "Corpus",
    "make_corpus",
    "array_record_windows",
    "data_fingerprint",
    "check_fingerprint",
]

_HASHED_WINDOWS = 1024
"""A fingerprint hashes at most this many evenly spaced windows."""


class TokenWindows:
  """Random-access source of the non-overlapping windows of a token array.

  Window ``i`` is ``tokens[i * seq_len : i * seq_len + seq_len + 1]``: inputs
  and targets of one sequence (the last token of a window is the first of
  the next).

  Args:
    tokens: 1-D integer token array.
    seq_len: Model sequence length.

  Example:
    >>> w = TokenWindows(np.arange(10), 3)
    >>> len(w), w[2].tolist()
    (3, [6, 7, 8, 9])
  """

  def __init__(self, tokens: Any, seq_len: int):
    self.tokens = np.asarray(tokens)
    if self.tokens.ndim != 1:
      raise ValueError(f"tokens must be 1-D; got shape {self.tokens.shape}.")
    if seq_len < 1:
      raise ValueError(f"seq_len must be >= 1; got {seq_len}.")
    self.seq_len = int(seq_len)

  def __len__(self) -> int:
    return max((len(self.tokens) - 1) // self.seq_len, 0)

  def __getitem__(self, index: int) -> np.ndarray:
    start = int(index) * self.seq_len
    return self.tokens[start:start + self.seq_len + 1].astype(np.int32)


@dataclasses.dataclass(frozen=True)
class Corpus:
  """The data of a run.

  Attributes:
    train: Random-access training windows of ``seq_len + 1`` tokens.
    val_tokens: 1-D validation tokens.
    kind: Name of the source (``"pydoc"``, ``"files"``, ...).
    seq_len: Window length minus one.
    fingerprint: ``{"source", "windows", "hash", "seq_len"}``
      (:func:`make_corpus`).
  """
  train: Any
  val_tokens: np.ndarray
  kind: str
  seq_len: int
  fingerprint: dict[str, Any]


def _window_hash(train: Any, n: int) -> str:
  h = hashlib.blake2b(digest_size=16)
  picked = np.linspace(0, n - 1, min(n, _HASHED_WINDOWS))
  for i in sorted({int(i) for i in picked}):
    h.update(np.ascontiguousarray(train[i], dtype=np.int32).tobytes())
  return h.hexdigest()


def make_corpus(train: Any, val_tokens: Any, *, seq_len: int,
           kind: str = "custom", vocab_size: int | None = None) -> Corpus:
  """Checks a training source and its validation tokens; makes a Corpus.

  This is the hook for one's own data: pass the result to
  :func:`sparsejax.pretrain.plan.plan` or ``run(..., corpus=...)``.

  Args:
    train: A grain ``MapDataset`` or random-access source (``len`` and
      ``[i]``) whose elements are 1-D integer windows of ``seq_len + 1``
      tokens.
    val_tokens: 1-D validation tokens (more than ``seq_len``).
    seq_len: The model's ``data.seq_len``.
    kind: Name of the source, stored in the checkpoint fingerprint.
    vocab_size: If given, tokens must lie in ``[0, vocab_size)``.

  Returns:
    The :class:`Corpus`; its fingerprint hashes up to 1024 evenly spaced
    windows.

  Raises:
    ConfigError: An empty source, a first or last window of the wrong shape
      or values (the windows between are first read in training), or too few
      validation tokens.

  Example:
    >>> windows = TokenWindows(np.arange(100), 9)
    >>> c = make_corpus(windows, np.arange(20), seq_len=9)
    >>> c.fingerprint["windows"], c.fingerprint["source"]
    (11, 'custom')
    >>> make_corpus([np.arange(5)], np.arange(20), seq_len=9)
    Traceback (most recent call last):
    ...
    sparsejax.pretrain.config.ConfigError: data source 'custom': window 0 has shape (5,); expected (10,) (data.seq_len + 1 tokens).
  """
  n = len(train)
  if n < 1:
    raise config_lib.ConfigError(
        f"data source {kind!r} has no training window of {seq_len + 1} tokens "
        f"(data.seq_len={seq_len}); it needs more data.")
  for i in sorted({0, n - 1}):
    w = np.asarray(train[i])
    if w.shape != (seq_len + 1,) or not np.issubdtype(w.dtype, np.integer):
      raise config_lib.ConfigError(
          f"data source {kind!r}: window {i} has shape {w.shape}; expected "
          f"({seq_len + 1},) (data.seq_len + 1 tokens).")
    if vocab_size is not None and (w.min() < 0 or w.max() >= vocab_size):
      raise config_lib.ConfigError(
          f"data source {kind!r}: window {i} has tokens outside "
          f"[0, {vocab_size}).")
  val_tokens = np.asarray(val_tokens)
  if val_tokens.ndim != 1 or len(val_tokens) <= seq_len:
    raise config_lib.ConfigError(
        f"data source {kind!r}: the validation split ({len(val_tokens)} "
        f"tokens) is shorter than one window (data.seq_len={seq_len}); raise "
        "data.val_fraction.")
  fp = {"source": kind, "windows": n, "hash": _window_hash(train, n),
        "seq_len": int(seq_len)}
  return Corpus(train, val_tokens, kind, int(seq_len), fp)


def array_record_windows(paths: list[str]) -> grain.MapDataset:
  """Windows stored one per record in ArrayRecord files, as raw bytes.

  Each record holds the ``seq_len + 1`` byte-level tokens of one window
  (``window.astype(np.uint8).tobytes()``).

  Args:
    paths: ArrayRecord files, read in the order given.

  Returns:
    A ``grain.MapDataset`` of ``int32`` windows.

  Example:
    >>> import tempfile, os
    >>> from array_record.python import array_record_module as ar
    >>> path = os.path.join(tempfile.mkdtemp(), "w.array_record")
    >>> writer = ar.ArrayRecordWriter(path, "group_size:1")
    >>> for i in range(3):
    ...   writer.write(np.arange(i, i + 5, dtype=np.uint8).tobytes())
    >>> writer.close()
    >>> array_record_windows([path])[2].tolist()
    [2, 3, 4, 5, 6]
  """
  source = grain.sources.ArrayRecordDataSource(list(paths))
  return grain.MapDataset.source(source).map(
      lambda record: np.frombuffer(record, np.uint8).astype(np.int32))


def data_fingerprint(corpus: Corpus, *, seed: int,
                     batch_size: int) -> dict[str, Any]:
  """What a saved data state must match: the source, seed and global batch.

  Args:
    corpus: The run's corpus.
    seed: The shuffle seed.
    batch_size: The global batch size.

  Returns:
    A JSON-compatible dict.

  Example:
    >>> windows = TokenWindows(np.arange(100), 9)
    >>> c = make_corpus(windows, np.arange(20), seq_len=9)
    >>> sorted(data_fingerprint(c, seed=0, batch_size=4))
    ['batch_size', 'hash', 'seed', 'seq_len', 'source', 'windows']
  """
  return {**corpus.fingerprint, "seed": int(seed),
          "batch_size": int(batch_size)}


def check_fingerprint(saved: Any, expected: dict[str, Any],
                      where: str) -> None:
  """Refuses a saved data state of another data source or pipeline.

  Args:
    saved: The fingerprint stored in a checkpoint.
    expected: The configured run's (:func:`data_fingerprint`).
    where: The checkpoint, for the message.

  Raises:
    ConfigError: Naming each differing key with both sides.

  Example:
    >>> check_fingerprint({"seed": 1}, {"seed": 2}, "step 4")
    Traceback (most recent call last):
    ...
    sparsejax.pretrain.config.ConfigError: the data state saved in step 4 does not match the configured data: seed: saved 1, configured 2. ...
  """
  saved = saved if isinstance(saved, dict) else {}
  diffs = [f"{k}: saved {saved.get(k, '<missing>')!r}, configured "
           f"{expected.get(k, '<missing>')!r}"
           for k in sorted(set(saved) | set(expected))
           if saved.get(k, "<missing>") != expected.get(k, "<missing>")]
  if diffs:
    raise config_lib.ConfigError(
        f"the data state saved in {where} does not match the configured "
        f"data: {'; '.join(diffs)}. Resume with the data it was trained on, "
        "or use a new --workdir (nothing was computed).")
