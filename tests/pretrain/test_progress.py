"""The progress display: tqdm on a terminal, plain lines in a log, and an ETA
whose clock starts after the compiling first step."""
import io
import re

import pytest

from sparsejax.pretrain import progress


class _Clock:
  def __init__(self):
    self.t = 1000.0

  def __call__(self):
    return self.t


@pytest.fixture
def clock(monkeypatch):
  c = _Clock()
  monkeypatch.setattr(progress.time, "perf_counter", c)
  return c


def test_plain_lines_eta_excludes_compilation(clock):
  out = io.StringIO()
  bar = progress.Progress(100, label="sparse", stream=out)
  clock.t += 300.0         # the first step compiles for five minutes
  bar.started(1)
  for step in range(2, 101):
    clock.t += 0.1         # then each step takes 0.1 s
    bar.update(step, loss=1.0)
  bar.close()
  lines = out.getvalue().splitlines()
  assert lines[0] == "sparse: compiling the training step (step 1 of 100)"
  # The first timed step, then one line per tenth of the run (no carriage
  # returns in a log).
  assert len(lines) == 12 and "\r" not in out.getvalue()
  assert lines[1].startswith("sparse:   2% 2/100 [00:00<00:09")
  half = next(line for line in lines if " 50/100 " in line)
  # 49 steps in 4.9 s since the clock started; 50 left: ETA 5 s, not minutes.
  assert re.search(r"\[00:0[45]<00:0[45],", half), half
  assert lines[-1].startswith("sparse: 100% 100/100 [00:09<00:00")


def test_plain_lines_at_least_once_a_minute(clock):
  out = io.StringIO()
  bar = progress.Progress(10_000, stream=out)
  bar.started(1)
  for step in range(2, 12):  # slow steps inside one tenth of the run
    clock.t += 30.0
    bar.update(step)
  assert len(out.getvalue().splitlines()) == 1 + 5


def test_terminal_uses_tqdm(clock):
  class Tty(io.StringIO):
    def isatty(self):
      return True

  out = Tty()
  bar = progress.Progress(20, start=5, label="dense", stream=out)
  bar.started(6)
  assert bar._bar is not None and bar._bar.n == 6
  bar.update(20, loss=0.5)
  assert bar._bar.n == 20
  bar.close()
  assert "20/20" in out.getvalue() and "loss 0.5" in out.getvalue()


def test_disabled_prints_nothing(clock):
  out = io.StringIO()
  bar = progress.Progress(10, stream=out, enabled=False)
  bar.started(1)
  bar.update(10, loss=1.0)
  bar.close()
  assert out.getvalue() == ""
