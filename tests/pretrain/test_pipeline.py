"""Tests of `sparsejax.pretrain.pipeline`: the grain training pipeline."""
import numpy as np
import pytest

from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import corpus as corpus_lib
from sparsejax.pretrain import pipeline

SEQ = 16
TOKENS = np.arange(400 * SEQ + 1)  # unique values reveal each window: 400


def _windows():
  return corpus_lib.TokenWindows(TOKENS, SEQ)


def _batches(steps, *, batch_size=8, seed=0, process_index=0,
             process_count=1, state=None):
  ds = pipeline.train_dataset(_windows(), batch_size=batch_size, seed=seed,
                              process_index=process_index,
                              process_count=process_count)
  it = pipeline.train_iterator(ds, state)
  return [next(it) for _ in range(steps)], it.get_state()


def _starts(batches):
  return np.concatenate([b["inputs"][:, 0] for b in batches])


def test_batches_are_lm_windows_of_the_corpus():
  batches, state = _batches(3)
  b = batches[0]
  assert b["inputs"].shape == b["targets"].shape == (8, SEQ)
  assert b["inputs"].dtype == np.int32
  np.testing.assert_array_equal(b["targets"], b["inputs"] + 1)
  assert set((_starts(batches) % SEQ).tolist()) == {0}  # on the grid
  assert state == {"next_index": 3}


def test_shuffle_is_deterministic_and_seeded():
  a, _ = _batches(4, seed=5)
  b, _ = _batches(4, seed=5)
  c, _ = _batches(4, seed=6)
  np.testing.assert_array_equal(_starts(a), _starts(b))
  assert not np.array_equal(_starts(a), _starts(c))
  assert not np.array_equal(np.sort(_starts(a)), _starts(a))  # shuffled


def test_each_epoch_is_a_new_permutation_of_all_windows():
  batches, _ = _batches(100)  # 800 windows: two epochs of 400
  starts = _starts(batches) // SEQ
  first, second = starts[:400], starts[400:]
  assert sorted(first.tolist()) == list(range(400))
  assert sorted(second.tolist()) == list(range(400))
  assert not np.array_equal(first, second)


def test_resume_from_saved_state_gives_the_same_next_batches():
  full, _ = _batches(60)  # crosses the first epoch's end
  _, state = _batches(47)
  assert state == {"next_index": 47}
  resumed, end = _batches(13, state=dict(state))
  np.testing.assert_array_equal(_starts(full[47:]), _starts(resumed))
  assert end == {"next_index": 60}


@pytest.mark.parametrize("count", [2, 4, 8])
def test_global_batch_and_state_do_not_depend_on_process_count(count):
  whole, state = _batches(53)
  parts = [_batches(53, process_index=i, process_count=count)
           for i in range(count)]
  for local, local_state in parts:
    assert local[0]["inputs"].shape == (8 // count, SEQ)
    assert local_state == state
  for t in (0, 49, 52):  # 50 batches of 8 = one epoch
    glued = np.concatenate([p[0][t]["inputs"] for p in parts])
    np.testing.assert_array_equal(glued, whole[t]["inputs"])


def test_resume_on_another_process_count_sees_the_same_batches():
  full, _ = _batches(10)
  _, state = _batches(6, process_index=1, process_count=2)  # saved on 2
  parts = [_batches(4, process_index=i, process_count=4, state=dict(state))[0]
           for i in range(4)]  # resumed on 4
  for t in range(4):
    glued = np.concatenate([p[t]["inputs"] for p in parts])
    np.testing.assert_array_equal(glued, full[6 + t]["inputs"])


def test_batch_that_does_not_divide_over_processes_is_refused():
  with pytest.raises(config_lib.ConfigError,
                     match=r"data.batch_size=6 does not divide over the 4 "
                           r"processes"):
    pipeline.train_dataset(_windows(), batch_size=6, seed=0,
                           process_index=0, process_count=4)


def test_array_record_windows_train_like_token_windows(tmp_path):
  ar = pytest.importorskip("array_record.python.array_record_module")
  path = str(tmp_path / "w.array_record")
  writer = ar.ArrayRecordWriter(path, "group_size:1")
  for i in range(len(_windows())):
    writer.write(_windows()[i].astype(np.uint8).tobytes())
  writer.close()
  records = corpus_lib.array_record_windows([path])
  ds = pipeline.train_dataset(records, batch_size=8, seed=0,
                              process_index=0, process_count=1)
  expected, _ = _batches(2)
  np.testing.assert_array_equal(ds[1]["inputs"],
                                expected[1]["inputs"].astype(np.uint8))
