"""Tests of `sparsejax.pretrain.corpus`: windows, corpora, fingerprints."""
import numpy as np
import pytest

from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import corpus as corpus_lib
from sparsejax.pretrain import data

SEQ = 16
TOKENS = np.arange(400 * SEQ + 1)  # unique values reveal each window: 400


def _windows():
  return corpus_lib.TokenWindows(TOKENS, SEQ)


def test_windows_cut_the_token_array_on_a_grid():
  w = _windows()
  assert len(w) == 400
  np.testing.assert_array_equal(w[3], TOKENS[3 * SEQ:4 * SEQ + 1])
  assert w[3].dtype == np.int32
  assert len(corpus_lib.TokenWindows(np.arange(SEQ), SEQ)) == 0
  with pytest.raises(ValueError, match="1-D"):
    corpus_lib.TokenWindows(np.zeros((2, 3)), 2)


def test_make_corpus_checks_the_source():
  c = corpus_lib.make_corpus(_windows(), np.arange(100), seq_len=SEQ)
  assert c.fingerprint["windows"] == 400
  same = corpus_lib.make_corpus(_windows(), np.arange(100), seq_len=SEQ)
  assert same.fingerprint == c.fingerprint
  reversed_windows = corpus_lib.TokenWindows(TOKENS[::-1].copy(), SEQ)
  other = corpus_lib.make_corpus(reversed_windows, np.arange(100), seq_len=SEQ)
  assert other.fingerprint["hash"] != c.fingerprint["hash"]
  with pytest.raises(config_lib.ConfigError, match="no training window"):
    corpus_lib.make_corpus(corpus_lib.TokenWindows(np.arange(5), SEQ),
                           np.arange(100), seq_len=SEQ)
  with pytest.raises(config_lib.ConfigError, match="validation split"):
    corpus_lib.make_corpus(_windows(), np.arange(SEQ), seq_len=SEQ)
  with pytest.raises(config_lib.ConfigError, match=r"outside \[0, 256\)"):
    corpus_lib.make_corpus(_windows(), np.arange(100), seq_len=SEQ,
                           vocab_size=data.VOCAB_SIZE)


def test_fingerprint_mismatch_names_both_sides():
  c = corpus_lib.make_corpus(_windows(), np.arange(100), seq_len=SEQ)
  fp = corpus_lib.data_fingerprint(c, seed=1, batch_size=8)
  corpus_lib.check_fingerprint(dict(fp), fp, "step 3")
  with pytest.raises(config_lib.ConfigError,
                     match=r"step 3 .*batch_size: saved 4, configured 8.*"
                           r"seed: saved 2, configured 1"):
    corpus_lib.check_fingerprint({**fp, "seed": 2, "batch_size": 4}, fp,
                               "step 3")
