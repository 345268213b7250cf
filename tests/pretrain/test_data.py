"""Tests of `sparsejax.pretrain.data`."""
import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from sparsejax.pretrain import data


@pytest.fixture(scope="module")
def corpus_tokens():
  return data.encode(data.pydoc_corpus())


def test_pydoc_corpus_is_deterministic_english(corpus_tokens):
  corpus = data.pydoc_corpus()
  assert corpus == data.pydoc_corpus()
  assert 400_000 < len(corpus) < 2_000_000
  text = corpus.decode("utf-8")
  assert "for" in text and "while" in text and "lambda" in text
  # Mostly printable ASCII English.
  assert np.mean(corpus_tokens < 128) > 0.99
  assert corpus_tokens.dtype == np.uint8 and len(corpus_tokens) == len(corpus)


def test_encode_decode_round_trip():
  text = "naïve café — ünïcode ✓\n"
  tokens = data.encode(text)
  assert tokens.dtype == np.uint8 and len(tokens) == len(text.encode())
  assert data.decode(tokens) == text
  assert data.encode(text, np.int32).dtype == np.int32
  assert data.decode(data.encode(b"\x00\xff"[:1])) == "\x00"
  assert "\ufffd" in data.decode(np.array([0xff]))  # invalid UTF-8 replaced


def test_train_val_split_sizes(corpus_tokens):
  train, val = data.train_val_split(corpus_tokens, 0.1)
  assert len(train) + len(val) == len(corpus_tokens)
  assert abs(len(val) - 0.1 * len(corpus_tokens)) <= 1
  np.testing.assert_array_equal(np.concatenate([train, val]), corpus_tokens)
  t0, v0 = data.train_val_split(corpus_tokens, 0.0)
  assert len(v0) == 0 and len(t0) == len(corpus_tokens)
  with pytest.raises(ValueError):
    data.train_val_split(corpus_tokens, 1.0)


def test_text_files(tmp_path):
  (tmp_path / "sub").mkdir()
  (tmp_path / "b.txt").write_bytes(b"second")
  (tmp_path / "a.txt").write_bytes("first é".encode())
  (tmp_path / "sub" / "c.txt").write_bytes(b"third")
  tokens = data.text_files([tmp_path / "b.txt", str(tmp_path / "a.txt")])
  assert data.decode(tokens) == "second\n\nfirst é"
  assert data.decode(data.text_files(tmp_path, separator=b"|")) == (
      "first é|second|third")
  with pytest.raises(FileNotFoundError):
    data.text_files(tmp_path / "missing.txt")


def test_global_batch_builds_sharded_array():
  mesh = Mesh(np.array(jax.devices()[:8]).reshape(4, 2), ("data", "model"))
  batch = data.sequential_windows(np.arange(129) % 256, 16)
  out = data.global_batch(batch, NamedSharding(mesh, P("data")))
  assert out["inputs"].shape == (8, 16)
  assert tuple(out["inputs"].sharding.spec) == ("data",)
  np.testing.assert_array_equal(np.asarray(out["targets"]), batch["targets"])
  per_leaf = {"inputs": NamedSharding(mesh, P("data", "model")),
              "targets": NamedSharding(mesh, P())}
  out2 = data.global_batch(batch, per_leaf)
  assert tuple(out2["inputs"].sharding.spec) == ("data", "model")
  np.testing.assert_array_equal(np.asarray(out2["inputs"]), batch["inputs"])


def test_sequential_windows_cover_tokens():
  tokens = np.arange(50)
  w = data.sequential_windows(tokens, 7)
  assert w["inputs"].shape == (7, 7)
  np.testing.assert_array_equal(w["inputs"].ravel(), tokens[:49])
  np.testing.assert_array_equal(w["targets"].ravel(), tokens[1:50])


def test_synthetic_regression_teacher():
  x, y = data.synthetic_regression(256, 8, 2, noise=0.0, seed=0)
  x2, y2 = data.synthetic_regression(256, 8, 2, noise=0.0, seed=0)
  x3, _ = data.synthetic_regression(256, 8, 2, noise=0.0, seed=1)
  np.testing.assert_array_equal(x, x2)
  np.testing.assert_array_equal(y, y2)
  assert not np.array_equal(x, x3)
  assert x.shape == (256, 8) and y.shape == (256, 2)
  # Non-trivial and nonlinear: a linear fit leaves a residual, yet there is
  # a clear signal.
  coef, *_ = np.linalg.lstsq(np.c_[x, np.ones(256)], y, rcond=None)
  resid = y - np.c_[x, np.ones(256)] @ coef
  assert 0.01 < resid.var() / y.var() < 0.9


def test_synthetic_classification_is_learnable():
  x, y = data.synthetic_classification(2000, 4, 16, seed=0)
  assert x.shape == (2000, 16) and y.dtype == np.int32
  assert set(np.unique(y).tolist()) == {0, 1, 2, 3}
  means = np.stack([x[y == c].mean(0) for c in range(4)])
  pred = np.argmin(((x[:, None] - means[None]) ** 2).sum(-1), axis=1)
  accuracy = (pred == y).mean()
  assert 0.8 < accuracy < 1.0  # separable but not trivially so
  xi, yi = data.synthetic_classification(10, 3, (4, 4, 2), seed=1)
  xj, yj = data.synthetic_classification(10, 3, (4, 4, 2), seed=1)
  assert xi.shape == (10, 4, 4, 2)
  np.testing.assert_array_equal(xi, xj)
  np.testing.assert_array_equal(yi, yj)
