"""Tokenized sentences as the padded arrays a BERT encoder takes.

A WordPiece tokenizer (``tokenizers.Tokenizer`` or any object with
``encode_batch(texts)`` returning encodings with ``.ids``) turns texts into
ids of different lengths; :func:`pad_batch` truncates them and right-pads
them to one bucketed length, so a jitted encoder compiles a few shapes only.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["bucket_length", "pad_batch"]


def bucket_length(longest: int, max_length: int) -> int:
  """The padded length of a batch: a power of two >= 16, <= ``max_length``.

  Args:
    longest: The longest tokenized text of the batch.
    max_length: The truncation length.

  Returns:
    The length every row is padded to.

  Example:
    >>> bucket_length(3, 256), bucket_length(17, 256), bucket_length(300, 256)
    (16, 32, 256)
  """
  return min(max(16, 1 << math.ceil(math.log2(max(longest, 1)))), max_length)


def pad_batch(tokenizer: Any, sentences: Sequence[str],
              max_length: int) -> dict[str, np.ndarray]:
  """Tokenizes, truncates to ``max_length`` and right-pads to a bucket.

  Args:
    tokenizer: An object with ``encode_batch(texts)`` (e.g. a
      ``tokenizers.Tokenizer`` with padding off).
    sentences: Input texts.
    max_length: Longest row kept (longer inputs are truncated).

  Returns:
    ``{"input_ids", "attention_mask", "token_type_ids"}`` int32 arrays of
    shape ``(len(sentences), bucket_length(...))``.

  Example:
    >>> class Words:  # one id per word
    ...   def encode_batch(self, texts):
    ...     class Encoding: pass
    ...     out = []
    ...     for t in texts:
    ...       e = Encoding(); e.ids = [7] * len(t.split()); out.append(e)
    ...     return out
    >>> batch = pad_batch(Words(), ["a b", "c d e"], 64)
    >>> batch["input_ids"].shape, batch["attention_mask"].sum(axis=1).tolist()
    ((2, 16), [2, 3])
  """
  encodings = tokenizer.encode_batch(list(sentences))
  ids = [list(e.ids)[:max_length] for e in encodings]
  length = bucket_length(max((len(x) for x in ids), default=1), max_length)
  input_ids = np.zeros((len(ids), length), np.int32)
  mask = np.zeros((len(ids), length), np.int32)
  for row, x in enumerate(ids):
    input_ids[row, :len(x)] = x
    mask[row, :len(x)] = 1
  return {"input_ids": input_ids, "attention_mask": mask,
          "token_type_ids": np.zeros_like(input_ids)}
