"""The configured data sources, one's own corpus, and data-state checks."""
import json
import os

import jax
import numpy as np
import pytest

from sparsejax.pretrain import checkpoint as ckpt_lib
from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import corpus as corpus_lib
from sparsejax.pretrain import data
from sparsejax.pretrain import integrity
from sparsejax.pretrain import loop
from sparsejax.pretrain import plan as plan_lib
from sparsejax.pretrain import recipes
from sparsejax.pretrain import sources
from tests import checkpoint_damage as damage

SMOKE = recipes.recipe_path("smoke")
TEXT = "the quick brown fox jumps over the lazy dog. " * 100  # 4500 bytes


def _smoke(**data_keys):
  cfg = config_lib.load_config_file(SMOKE)
  cfg.sparsity.baseline = False
  for key, value in data_keys.items():
    cfg.data[key] = value
  return cfg


def _text_file(tmp_path, text=TEXT):
  path = tmp_path / "corpus.txt"
  path.write_text(text)
  return str(path)


def test_batch_that_does_not_divide_over_the_processes(monkeypatch):
  monkeypatch.setattr(jax, "process_count", lambda: 4)
  with pytest.raises(config_lib.ConfigError,
                     match=r"data.batch_size=6 does not divide over the 4 "
                           r"processes"):
    plan_lib.plan(_smoke(batch_size=6), jax.devices()[:1])


def test_too_short_and_empty_corpora_are_refused(tmp_path):
  short = _smoke(source="files", paths=_text_file(tmp_path, TEXT[:400]),
                 val_fraction=0.5)
  with pytest.raises(config_lib.ConfigError,
                     match=r"gives only 6 windows of 33 tokens; "
                           r"data.batch_size=8"):
    sources.load_corpus(short)
  empty = _smoke(source="files", paths=_text_file(tmp_path, ""))
  with pytest.raises(config_lib.ConfigError, match="no training window"):
    sources.load_corpus(empty)


def test_array_record_source_is_planned_from_the_config(tmp_path):
  ar = pytest.importorskip("array_record.python.array_record_module")
  tokens = data.encode(TEXT)
  windows = corpus_lib.TokenWindows(tokens, 32)
  path = str(tmp_path / "windows.array_record")
  writer = ar.ArrayRecordWriter(path, "group_size:1")
  for i in range(len(windows)):
    writer.write(windows[i].astype(np.uint8).tobytes())
  writer.close()
  cfg = _smoke(source="array_record", paths=path)
  corpus = sources.load_corpus(cfg)
  n_val = int(round(len(windows) * cfg.data.val_fraction))
  assert len(corpus.train) == len(windows) - n_val
  np.testing.assert_array_equal(corpus.train[3], windows[3])
  # The held-out windows, joined where they overlap: the text's tail.
  np.testing.assert_array_equal(
      corpus.val_tokens,
      tokens[(len(windows) - n_val) * 32:len(windows) * 32 + 1])
  assert corpus.fingerprint["source"] == "array_record"
  cfg.data.seq_len = 16
  with pytest.raises(config_lib.ConfigError, match=r"window 0 has shape"):
    sources.load_corpus(cfg)


def test_own_corpus_must_fit_the_config():
  corpus = corpus_lib.make_corpus(
      corpus_lib.TokenWindows(np.arange(2000) % 256, 16), np.arange(100),
      seq_len=16)
  with pytest.raises(config_lib.ConfigError,
                     match=r"windows of 17 tokens but data.seq_len=32"):
    plan_lib.plan(_smoke(), jax.devices()[:1], corpus=corpus)


def test_resume_of_other_data_is_refused_before_compute(tmp_path):
  cfg = _smoke(source="files", paths=_text_file(tmp_path))
  workdir = str(tmp_path / "run")
  ckpt_lib.write_config(workdir, cfg)
  saved = {"source": "files", "windows": 3, "hash": "0" * 32, "seq_len": 32,
           "seed": cfg.seed, "batch_size": 8}
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "sparse", "checkpoints"),
                               async_save=False)
  ckpt.save(4, {"x": jax.numpy.zeros(2)},
            {"iterator": {"next_index": 4}, "fingerprint": saved})
  ckpt.close()
  (arm,) = plan_lib.plan(cfg, jax.devices()[:1])
  configured = arm.corpus.fingerprint
  with pytest.raises(config_lib.ConfigError,
                     match=r"does not match the configured data: hash: saved "
                           rf"'0{{32}}', configured '{configured['hash']}'; "
                           rf"windows: saved 3, configured "
                           rf"{configured['windows']}"):
    loop.run(cfg, workdir, devices=jax.devices()[:1], progress=False)
  assert not os.path.exists(os.path.join(workdir, "sparse", "metrics.jsonl"))


def test_damaged_data_state_is_damage(tmp_path):
  ckpt = ckpt_lib.Checkpointer(tmp_path, async_save=False)
  with pytest.raises(ValueError, match=r"data state of step 1 is damaged"):
    ckpt.save(1, {"x": jax.numpy.zeros(2)}, {"iterator": {}})
  ckpt.close()
  # Checksums that verify, over a data state that is not one: step 3 is
  # reported as damaged and the run falls back to step 2.
  directory = damage.save_tiny(tmp_path / "ckpt")
  step_dir = os.path.join(directory, "3")
  meta_file = os.path.join(step_dir, "meta", "metadata")
  with open(meta_file) as f:
    meta = json.load(f)
  meta["data_state"]["iterator"] = {"next_index": "thirty"}
  with open(meta_file, "w") as f:
    json.dump(meta, f)
  integrity.write_manifest(step_dir)
  ckpt = ckpt_lib.Checkpointer(directory, keep=4, async_save=False)
  target = jax.eval_shape(lambda: damage.tiny_state(0))
  with pytest.warns(integrity.DamagedCheckpointWarning,
                    match=r"step 3 is damaged: .*the data state of step 3 is "
                          r"damaged.*'thirty'"):
    step, _, data_state = ckpt.restore_latest(target)
  ckpt.close()
  assert step == 2 and data_state == damage.data_state(2)
