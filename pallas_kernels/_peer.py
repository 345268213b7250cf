"""The peer row of the device check: PyTorch's 2:4 semi-structured matmul.

Used by :mod:`pallas_kernels.device_check` where PyTorch with CUDA is
importable; nothing here imports PyTorch otherwise.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["peer_rows"]


def peer_rows(p: Any, emit: Callable[[str], Any],
              reps: int | None = None) -> list[dict[str, Any]]:
  """PyTorch's 2:4 semi-structured matmul on the plan's shapes, if available.

  Timed with CUDA events over a chain of ``p.chain`` dependent calls (each
  input plus ``1e-30`` times a slice of the previous output), median of
  ``reps`` repetitions, against PyTorch dense ``F.linear`` timed the same way.
  Returns no rows (and says why) without ``torch`` or CUDA. ``p`` is the
  device check's :class:`~pallas_kernels.device_check.Plan`.

  >>> from pallas_kernels.device_check import plan
  >>> peer_rows(plan(True), lambda s: None) if not _torch_cuda() else []
  []
  """
  torch = _torch_cuda()
  if torch is None:
    emit("# peer torch 2:4: skipped (torch with CUDA not importable)")
    return []
  import statistics  # pylint: disable=g-import-not-at-top
  from torch.sparse import to_sparse_semi_structured  # pylint: disable=g-import-not-at-top
  fl = torch.nn.functional.linear
  reps = reps or p.reps
  emit("peer  pattern shape       B     torch_dense_us torch_sparse_us  d/s")
  out = []
  for (k, cols) in p.shapes:
    w = torch.randn(cols, k, device="cuda", dtype=torch.bfloat16)
    g = w.abs().reshape(cols, k // 4, 4)
    top = g.topk(2, dim=-1).indices
    mask = torch.zeros_like(g, dtype=torch.bool).scatter_(-1, top, True)
    wm = (w.reshape(cols, k // 4, 4) * mask).reshape(cols, k)
    try:
      ws = to_sparse_semi_structured(wm)
    except Exception as e:  # pylint: disable=broad-except
      emit(f"# peer torch 2:4 {k}x{cols}: cannot compress ({e})")
      continue
    for b in p.batches:
      x0 = torch.randn(b, k, device="cuda", dtype=torch.bfloat16)

      def timed(weight, x0=x0):
        x = x0
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(p.chain):
          y = fl(x, weight)
          x = x + y[:, :1] * 1e-30
        end.record()
        end.synchronize()
        return start.elapsed_time(end) * 1e3 / p.chain

      try:
        for weight in (w, ws):
          timed(weight)
        times = {"dense": [], "sparse": []}
        for r in range(reps):
          order = (("dense", w), ("sparse", ws))[::(-1) ** r]
          for name, weight in order:
            times[name].append(timed(weight))
      except Exception as e:  # pylint: disable=broad-except
        emit(f"# peer torch 2:4 {k}x{cols} B={b}: failed ({e})")
        continue
      d = statistics.median(times["dense"])
      s = statistics.median(times["sparse"])
      out.append(dict(op="torch", pattern="2:4", shape=f"{k}x{cols}", batch=b,
                      dense_us=d, sparse_us=s, ratio=d / s))
      emit(f"torch 2:4     {k}x{cols:<6} {b:<5} {d:14.1f} {s:15.1f} "
           f"{d / s:5.2f}")
  return out


def _torch_cuda():
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  try:
    return torch if torch.cuda.is_available() else None
  except Exception:  # pylint: disable=broad-except
    return None
