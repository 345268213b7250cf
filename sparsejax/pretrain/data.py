"""The data of a pretraining run (also used by tests, tutorials, benchmarks).

Everything here is deterministic and offline:

* :func:`pydoc_corpus` returns the English text of ``pydoc_data.topics`` that
  ships with every CPython install (about half a megabyte), so a byte-level
  language model can be trained without downloading anything. The text differs
  slightly between Python versions; within one interpreter it never changes.
* :func:`encode` / :func:`decode` are the byte-level tokenizer (vocabulary 256).
* :func:`text_files` reads the user's own plain-text files with the same
  tokenizer.
* :func:`sequential_windows` cuts evaluation windows in order, and
  :func:`global_batch` assembles the processes' rows into sharded global
  arrays. Training batches come from the grain pipeline in
  :mod:`sparsejax.pretrain.pipeline`.
* :func:`synthetic_regression` and :func:`synthetic_classification` generate
  small seeded datasets.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

__all__ = [
    "VOCAB_SIZE",
    "pydoc_corpus",
    "encode",
    "decode",
    "train_val_split",
    "text_files",
    "sequential_windows",
    "global_batch",
    "synthetic_regression",
    "synthetic_classification",
]

VOCAB_SIZE = 256
"""Size of the byte-level vocabulary, one token per byte value."""


# --------------------------------------------------------------------------
# Corpus and tokenizer
# --------------------------------------------------------------------------


def pydoc_corpus() -> bytes:
  """Returns the ``pydoc_data.topics`` help text as UTF-8 bytes.

  The topic texts are joined with a blank line in sorted key order, so the
  result is identical on every run of the same Python version (roughly 460 KB
  on Python 3.11 and 490 KB on 3.12).

  Returns:
    The corpus as ``bytes``.

  Example:
    >>> corpus = pydoc_corpus()
    >>> len(corpus) > 400_000
    True
    >>> corpus == pydoc_corpus()
    True
  """
  from pydoc_data import topics

  texts = [topics.topics[key].strip("\n") for key in sorted(topics.topics)]
  return "\n\n".join(texts).encode("utf-8")


def encode(text: str | bytes, dtype: Any = np.uint8) -> np.ndarray:
  """Byte-level tokenizer: one token per UTF-8 byte.

  Args:
    text: A string (encoded as UTF-8) or raw bytes.
    dtype: Integer dtype of the result; ``uint8`` is the most compact, use
      ``int32`` to feed an embedding directly.

  Returns:
    A 1-D integer array of token ids in ``[0, 256)``.

  Example:
    >>> encode("hé")
    array([104, 195, 169], dtype=uint8)
  """
  if isinstance(text, str):
    text = text.encode("utf-8")
  return np.frombuffer(bytes(text), dtype=np.uint8).astype(dtype)


def decode(tokens: Any) -> str:
  """Inverse of :func:`encode`; invalid UTF-8 sequences become U+FFFD.

  Args:
    tokens: Any integer array-like of byte values.

  Returns:
    The decoded string.

  Example:
    >>> decode(encode("hello, wörld"))
    'hello, wörld'
  """
  data = np.asarray(tokens).astype(np.uint8).tobytes()
  return data.decode("utf-8", errors="replace")


def train_val_split(tokens: np.ndarray,
                    val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
  """Splits a token array into a training head and a validation tail.

  The split is contiguous (the last ``val_fraction`` of the tokens is held
  out) so that no training window overlaps a validation window.

  Args:
    tokens: 1-D token array.
    val_fraction: Fraction in ``[0, 1)`` held out for validation.

  Returns:
    ``(train, val)`` views of ``tokens``.

  Example:
    >>> train, val = train_val_split(np.arange(100), 0.1)
    >>> len(train), len(val), int(val[0])
    (90, 10, 90)
  """
  if not 0.0 <= val_fraction < 1.0:
    raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
  tokens = np.asarray(tokens)
  n_val = int(round(len(tokens) * val_fraction))
  cut = len(tokens) - n_val
  return tokens[:cut], tokens[cut:]


def text_files(paths: str | os.PathLike | Sequence[str | os.PathLike],
               separator: bytes = b"\n\n") -> np.ndarray:
  """Reads plain-text files into one byte-level token array.

  Args:
    paths: A file path or a sequence of them, read in the order given.
      Directories are expanded into their files, sorted by name (recursive).
    separator: Bytes inserted between consecutive files.

  Returns:
    A 1-D ``uint8`` token array (see :func:`encode`).

  Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "a.txt").write_text("abc")
    >>> _ = (d / "b.txt").write_text("de")
    >>> decode(text_files([d / "a.txt", d / "b.txt"], separator=b"|"))
    'abc|de'
    >>> decode(text_files(d, separator=b"|"))
    'abc|de'
  """
  if isinstance(paths, (str, os.PathLike)):
    paths = [paths]
  files: list[str] = []
  for p in paths:
    p = os.fspath(p)
    if os.path.isdir(p):
      for root, _, names in sorted(os.walk(p)):
        files.extend(os.path.join(root, n) for n in sorted(names))
    elif os.path.isfile(p):
      files.append(p)
    else:
      raise FileNotFoundError(f"No such file or directory: {p!r}")
  if not files:
    raise ValueError("text_files() found no files to read.")
  chunks = []
  for f in files:
    with open(f, "rb") as fh:
      chunks.append(fh.read())
  return encode(separator.join(chunks))


# --------------------------------------------------------------------------
# Evaluation windows and global arrays
# --------------------------------------------------------------------------


def sequential_windows(tokens: np.ndarray, seq_len: int
                       ) -> dict[str, np.ndarray]:
  """All non-overlapping ``(inputs, targets)`` windows in order, for evaluation.

  Args:
    tokens: 1-D token array.
    seq_len: Sequence length.

  Returns:
    ``{"inputs", "targets"}`` ``int32`` arrays of shape ``(n, seq_len)`` with
    ``n = (len(tokens) - 1) // seq_len``; every token but the first is
    predicted exactly once (except a short tail).

  Example:
    >>> w = sequential_windows(np.arange(10), 3)
    >>> w["inputs"].tolist(), w["targets"][-1].tolist()
    ([[0, 1, 2], [3, 4, 5], [6, 7, 8]], [7, 8, 9])
  """
  tokens = np.asarray(tokens)
  n = (len(tokens) - 1) // seq_len
  x = tokens[:n * seq_len + 1].astype(np.int32)
  return {"inputs": x[:-1].reshape(n, seq_len),
          "targets": x[1:].reshape(n, seq_len)}


def global_batch(local_batch: Any, sharding: Any) -> Any:
  """Assembles process-local batches into global sharded ``jax.Array``\\ s.

  Every process calls this with its own rows; the
  global shape is the local shape times ``jax.process_count()`` along axis 0.

  Args:
    local_batch: A pytree of host arrays holding this process's rows.
    sharding: A ``jax.sharding.Sharding`` for every leaf, or a pytree of them
      matching ``local_batch``.

  Returns:
    The same pytree of global ``jax.Array``\\ s.

  Example:
    >>> from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    >>> mesh = Mesh(np.array(jax.devices()), ("data",))
    >>> batch = sequential_windows(np.arange(129), 16)
    >>> out = global_batch(batch, NamedSharding(mesh, P("data")))
    >>> out["inputs"].shape, len(out["inputs"].addressable_shards)
    ((8, 16), 8)
  """
  if isinstance(sharding, jax.sharding.Sharding):
    sharding = jax.tree.map(lambda _: sharding, local_batch)
  return jax.tree.map(jax.make_array_from_process_local_data, sharding,
                      local_batch)


# --------------------------------------------------------------------------
# Synthetic datasets
# --------------------------------------------------------------------------


def synthetic_regression(n: int = 1024,
                         in_features: int = 16,
                         out_features: int = 1,
                         *,
                         hidden: int = 32,
                         noise: float = 0.01,
                         seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Regression targets of a random two-layer tanh teacher network.

  Args:
    n: Number of examples.
    in_features: Input dimension.
    out_features: Output dimension.
    hidden: Hidden width of the teacher.
    noise: Standard deviation of Gaussian label noise.
    seed: Seed; the same seed gives the same data.

  Returns:
    ``(x, y)`` ``float32`` arrays of shapes ``(n, in_features)`` and
    ``(n, out_features)``.

  Example:
    >>> x, y = synthetic_regression(8, 4, 2, seed=1)
    >>> x.shape, y.shape, x.dtype
    ((8, 4), (8, 2), dtype('float32'))
  """
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, in_features))
  w1 = rng.standard_normal((in_features, hidden)) / np.sqrt(in_features)
  w2 = rng.standard_normal((hidden, out_features)) / np.sqrt(hidden)
  y = np.tanh(x @ w1) @ w2 + noise * rng.standard_normal((n, out_features))
  return x.astype(np.float32), y.astype(np.float32)


def synthetic_classification(n: int = 1024,
                             num_classes: int = 4,
                             shape: int | Sequence[int] = 16,
                             *,
                             separation: float = 4.0,
                             spread: float = 1.0,
                             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Gaussian clusters, one per class, optionally shaped as images.

  Class means are random with expected pairwise distance ``separation``; each
  example adds isotropic Gaussian noise of standard deviation ``spread`` per
  coordinate, so two classes overlap about as much as two 1-D Gaussians
  ``separation / spread`` standard deviations apart.

  Args:
    n: Number of examples.
    num_classes: Number of classes (clusters).
    shape: Shape of one example, e.g. ``16`` for vectors or ``(8, 8, 1)`` for
      images in NHWC layout.
    separation: Typical distance between two class means.
    spread: Within-class standard deviation per coordinate.
    seed: Seed; the same seed gives the same data.

  Returns:
    ``(x, labels)``: ``float32`` inputs of shape ``(n, *shape)`` and ``int32``
    labels of shape ``(n,)``.

  Example:
    >>> x, y = synthetic_classification(6, 3, (4, 4, 1), seed=0)
    >>> x.shape, y.dtype, int(y.max()) < 3
    ((6, 4, 4, 1), dtype('int32'), True)
  """
  shape = (shape,) if isinstance(shape, int) else tuple(shape)
  dim = int(np.prod(shape))
  rng = np.random.default_rng(seed)
  means = rng.standard_normal((num_classes, dim)) * (separation /
                                                      np.sqrt(2.0 * dim))
  labels = rng.integers(0, num_classes, size=n)
  x = means[labels] + spread * rng.standard_normal((n, dim))
  return x.reshape((n, *shape)).astype(np.float32), labels.astype(np.int32)
