"""One-command check of the kernels on a GPU/TPU: ``python -m pallas_kernels.device_check``.

On the device it

1. prints the device, clocks where readable, and the jax/jaxlib versions;
2. runs the kernel tests (``tests/pallas_kernels``) natively: the Pallas
   kernels run compiled for the device, not interpreted
   (``PALLAS_KERNELS_NATIVE=1`` is set for them, see
   :mod:`pallas_kernels._testing`);
3. prints the table of ratios against XLA dense ``jnp.dot`` (same process,
   device time, :mod:`pallas_kernels._timing`), one suite per op
   (:data:`SUITES`):

   * ``nm``: N:M 2:4, 1:8 and 1:16 at K=N=4096 and 8192, batch 1, 8 and 16,
     bf16, for ``xla`` and every kernel native to the device, then how far
     each pattern is from its target;
   * ``block_list``: dense x block-sparse
     (:func:`~pallas_kernels.block_sparse.block_list_api.block_list_matmul`, op
     ``block_list_dsd``) and its weight-gradient SDDMM
     (:func:`~pallas_kernels.block_sparse.block_list_sddmm.block_list_sddmm`,
     op
     ``block_list_sddmm``) at block
     density 0.1 and 0.25, 128x128 and 64x64 blocks (and 256x256 on TPU),
     K=N=4096 and 8192, batch 1, 16 and 2048, bf16, for every block-list
     kernel native to the device (a layout it cannot take is skipped, saying
     so); rows are keyed as the dispatch looks them up;

   every row gives device time, the ratio to dense and to the masked dense
   matmul, achieved GB/s (and its fraction of the device's peak) and
   TFLOP/s;
4. where PyTorch with CUDA is importable, the peer row: PyTorch's 2:4
   semi-structured matmul (``torch.sparse.to_sparse_semi_structured``) on the
   same shapes, timed the same way (CUDA events over a chain of calls);
5. with ``--write-table [PATH]``, merges the measured rows (those that ran
   natively) into the shipped table (``pallas_kernels/measured/table.json``
   by default), which the dispatch then uses on that device kind.

It is sized to finish in about 6 minutes on one H100/H200 (an estimate, not
a measurement: the tests take at most ``--tests-timeout-s`` = 150 s; no
table case starts later than ``--budget-s`` = 330 s after the start, the time
left after the tests being split evenly between the suites, a suite's unused
share passing to the next; the N:M table is 18 cases of five compiled
chains, the block-list table 24 cases of three for each of the two ops on
GPU, each chain of 32
calls timed 20 times). A suite out of time skips its remaining cases, saying
so.
``--dry`` runs the same code path on small shapes, on CPU, with the kernels
in interpret mode, in well under a minute; its figures time the interpreter
and mean nothing. Adding an op's rows is one entry in :data:`SUITES`.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from pallas_kernels import _testing
from pallas_kernels import _timing
from pallas_kernels import dispatch
from pallas_kernels._peer import peer_rows

__all__ = ["main", "Plan", "plan", "SUITES", "TARGETS", "table_rows",
           "peer_rows"]

# Targets at batch <= 16 (dense/sparse), and KERNELS.md's bounds.
TARGETS = {"2:4": 1.3, "1:8": 4.0, "1:16": 6.0}
_REPO = pathlib.Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Plan:
  """What a run measures."""
  shapes: tuple[tuple[int, int], ...]
  batches: tuple[int, ...]
  patterns: tuple[tuple[int, int], ...]
  dtype: str
  reps: int
  chain: int
  tests: tuple[str, ...]
  implementations: tuple[str, ...] | None  # None: xla + native kernels
  block_sizes: tuple[int, ...] = ()
  densities: tuple[float, ...] = ()
  block_batches: tuple[int, ...] = ()
  block_implementations: tuple[str, ...] | None = None  # None: native


def plan(dry: bool, platform: str | None = None) -> Plan:
  """The device plan, or the small CPU plan of ``--dry``.

  ``platform`` (default: the current backend) adds 256x256 blocks on TPU.

  >>> plan(True).shapes, plan(False).batches, plan(False, "tpu").block_sizes
  (((256, 256),), (1, 8, 16), (128, 64, 256))
  """
  platform = platform or jax.default_backend()
  if dry:
    return Plan(shapes=((256, 256),), batches=(1,),
                patterns=((2, 4), (1, 16)),
                dtype="bfloat16", reps=3, chain=2,
                tests=("tests/pallas_kernels/test_device_check.py::"
                       "test_kernel_implementations_switch",),
                implementations=("xla", "tpu", "triton", "triton_gather"),
                block_sizes=(64,), densities=(0.25,), block_batches=(1,),
                block_implementations=("xla", "xla_blocks", "tpu",
                                       "triton"))
  return Plan(shapes=((4096, 4096), (8192, 8192)), batches=(1, 8, 16),
              patterns=((2, 4), (1, 8), (1, 16)), dtype="bfloat16", reps=20,
              chain=32, tests=("tests/pallas_kernels",), implementations=None,
              block_sizes=(128, 64) + ((256,) if platform == "tpu" else ()),
              densities=(0.1, 0.25), block_batches=(1, 16, 2048))


def _clocks() -> str | None:
  try:
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,"
         "driver_version", "--format=csv,noheader"], capture_output=True,
        text=True, timeout=20, check=False)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout.strip() or None


def _run_tests(p: Plan, timeout_s: float, emit) -> bool:
  """Runs the kernel tests in a subprocess; True if they passed."""
  paths = [t for t in p.tests if (_REPO / t.split("::")[0]).exists()]
  if not paths:
    emit("# tests: not found next to the package (installed copy?); skipped")
    return True
  env = dict(os.environ)
  backend = jax.default_backend()
  if backend in ("gpu", "tpu"):
    env[_testing.ENV_NATIVE] = "1"
    env["JAX_PLATFORMS"] = "cuda" if backend == "gpu" else "tpu"
  cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:xdist",
         "-p", "no:cacheprovider", *paths]
  emit(f"# tests: {' '.join(cmd[1:])} ({_testing.ENV_NATIVE}="
       f"{env.get(_testing.ENV_NATIVE, '0')})")
  t0 = time.perf_counter()
  try:
    out = subprocess.run(cmd, cwd=_REPO, env=env, capture_output=True,
                         text=True, timeout=timeout_s, check=False)
  except subprocess.TimeoutExpired:
    emit(f"# tests: TIMEOUT after {timeout_s:.0f}s")
    return False
  tail = (out.stdout + out.stderr).strip().splitlines()[-15:]
  for line in tail:
    emit(f"#   {line}")
  emit(f"# tests: {'PASSED' if out.returncode == 0 else 'FAILED'} "
       f"(rc={out.returncode}, {time.perf_counter() - t0:.0f}s)")
  return out.returncode == 0


def _run_cases(cases, run, impls, emit, deadline) -> list[dict[str, Any]]:
  """``run(names, case)`` for each ``(where, case)`` until ``deadline``,
  failures isolated per implementation (:func:`_isolating_failures`)."""
  rows = []
  for where, case in cases:
    if time.perf_counter() > deadline:
      emit(f"# {where}: skipped (time budget)")
      continue
    rows += _isolating_failures(lambda names, case=case: run(names, case),
                                impls, where, emit)
  return rows


def _nm_suite(p: Plan, emit, deadline: float) -> list[dict[str, Any]]:
  from pallas_kernels.nm import bench as nm_bench  # pylint: disable=g-import-not-at-top
  emit(nm_bench.HEADER)
  impls = list(p.implementations or nm_bench.default_implementations())
  cases = [(f"nm {n}:{m} {shape[0]}x{shape[1]}", (shape, (n, m)))
           for shape in p.shapes for (n, m) in p.patterns]

  def run(names, case):
    return nm_bench.run([case[0]], p.batches, [case[1]], jnp.dtype(p.dtype),
                        names, p.reps, emit, p.chain)

  return _run_cases(cases, run, impls, emit, deadline)


def _block_list_suite(p: Plan, emit, deadline: float) -> list[dict[str, Any]]:
  from pallas_kernels.block_sparse import bench_block_list as bl_bench  # pylint: disable=g-import-not-at-top
  emit(bl_bench.HEADER)
  impls = list(p.block_implementations or
               bl_bench.default_implementations())
  if not impls:
    emit("# block_list: no block-list kernel is native to this backend")
    return []
  cases = [(f"block_list b{bs}x{bs} d{d} {shape[0]}x{shape[1]}",
            (shape, bs, d))
           for shape in p.shapes for bs in p.block_sizes for d in p.densities]

  def run(names, case):
    shape, bs, density = case
    return bl_bench.run([shape], p.block_batches, [bs], [density],
                        jnp.dtype(p.dtype), names, p.reps, emit, p.chain)

  return _run_cases(cases, run, impls, emit, deadline)


def _isolating_failures(run, impls, where, emit):
  """``run(impls)``; if it fails, each implementation alone, failures noted."""
  try:
    return run(impls)
  except Exception as e:  # pylint: disable=broad-except
    emit(f"# {where}: FAILED with {impls} ({type(e).__name__}: "
         f"{str(e).splitlines()[0] if str(e) else ''}); retrying one by one")
  rows = []
  for impl in impls:
    try:
      rows += run([impl])
    except Exception as e:  # pylint: disable=broad-except
      _FAILURES.append(f"{where} {impl}")
      emit(f"# {where} {impl}: FAILED ({type(e).__name__}: "
           f"{str(e).splitlines()[0] if str(e) else ''})")
  return rows


_FAILURES: list[str] = []


SUITES: dict[str, Callable[[Plan, Callable[[str], Any], float],
                           list[dict[str, Any]]]] = {
                               "nm": _nm_suite,
                               "block_list": _block_list_suite}
"""Op name -> ``suite(plan, emit, deadline) -> rows`` (bench row dicts)."""


def table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """The rows the dispatch table keeps: natively run, batch a bucket.

  >>> r = dict(device_kind="d", op="nm", pattern="2:4", dtype="bfloat16",
  ...          k=8, n=8, batch=8, implementation="pallas_gpu", interpret=False,
  ...          sparse_us=1.0, dense_us=2.0)
  >>> table_rows([r, dict(r, interpret=True), dict(r, batch=3)])[0]["us"]
  1.0
  >>> len(table_rows([r, dict(r, interpret=True), dict(r, batch=3)]))
  1
  """
  out = []
  for r in rows:
    if r["interpret"] or dispatch.batch_bucket(r["batch"]) != r["batch"]:
      continue
    out.append(dict(device_kind=r["device_kind"], op=r["op"],
                    pattern=r["pattern"], dtype=r["dtype"],
                    shape=[r["k"], r["n"]], batch=r["batch"],
                    implementation=r["implementation"],
                    us=round(r["sparse_us"], 3),
                    dense_us=round(r["dense_us"], 3)))
  return out


def _summary(rows, p: Plan, emit):
  emit("# targets at batch <= 16 (kernel d/s; bound = 16/bpe):")
  for (n, m) in p.patterns:
    pattern = f"{n}:{m}"
    if pattern not in TARGETS:
      continue
    target = TARGETS[pattern]
    kern = [r for r in rows if r["op"] == "nm" and r["pattern"] == pattern
            and r["implementation"] != "xla" and r["batch"] <= 16]
    bound = _timing.nm_bound(n, m)
    if not kern:
      emit(f"#   {pattern}: target >= {target}x (bound {bound:.2f}x): no "
           "kernel row measured")
      continue
    worst = min(kern, key=lambda r: r["ratio"])
    best = max(kern, key=lambda r: r["ratio"])
    mark = "" if not any(r["interpret"] for r in kern) else " (interpreted)"
    emit(f"#   {pattern}: target >= {target}x (bound {bound:.2f}x): "
         f"worst {worst['ratio']:.2f}x ({worst['impl']} {worst['shape']} "
         f"B={worst['batch']}), best {best['ratio']:.2f}x ({best['impl']} "
         f"{best['shape']} B={best['batch']}){mark}")


def main(argv: list[str] | None = None) -> int:
  """Runs the check; returns 0 when the tests and every measurement pass.

  >>> main(["--dry", "--skip-tests", "--ops", ""])  # doctest: +ELLIPSIS
  # device_check (dry: small shapes, kernels interpreted; figures mean nothing)
  ...
  0
  """
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--dry", action="store_true",
                  help="small shapes, interpret mode (CPU smoke run)")
  ap.add_argument("--write-table", nargs="?", const=str(dispatch.table_path()),
                  default=None, metavar="PATH",
                  help="merge the natively measured rows into PATH (default: "
                  "the shipped table)")
  ap.add_argument("--skip-tests", action="store_true")
  ap.add_argument("--tests-timeout-s", type=float, default=150.0)
  ap.add_argument("--budget-s", type=float, default=330.0,
                  help="stop adding table rows after this many seconds")
  ap.add_argument("--ops", default=",".join(SUITES),
                  help=f"comma-separated suites among {sorted(SUITES)}")
  ap.add_argument("--no-peer", action="store_true")
  args = ap.parse_args(argv)
  t0 = time.perf_counter()
  _FAILURES.clear()
  emit = print
  p = plan(args.dry)
  accel = jax.default_backend() in ("gpu", "tpu")
  emit("# device_check" + (" (dry: small shapes, kernels interpreted; figures "
                           "mean nothing)" if args.dry else ""))
  emit("# " + _timing.environment())
  clocks = _clocks() if accel else None
  if clocks:
    emit(f"# nvidia-smi name, sm clock, max sm clock, mem clock, driver: "
         f"{clocks}")
  if not accel and not args.dry:
    emit("# no GPU/TPU in this process: kernel rows would be interpreted; "
         "use --dry for a smoke run")
  ok = True
  if not args.skip_tests:
    ok = _run_tests(p, args.tests_timeout_s, emit)
  emit(f"# table: dtype={p.dtype} reps={p.reps} chain={p.chain}; d/s = "
       "dense/sparse, md/s = masked-dense/sparse (same process, device "
       "time); '*' = interpret mode")
  rows: list[dict[str, Any]] = []
  ops = [o for o in args.ops.split(",") if o]
  for op in ops:
    if op not in SUITES:
      raise SystemExit(f"--ops: unknown suite {op!r}; known: {sorted(SUITES)}")
  for i, op in enumerate(ops):
    # An even share of the time left; what a suite leaves passes on.
    now = time.perf_counter()
    share = max(0.0, t0 + args.budget_s - now) / (len(ops) - i)
    rows += SUITES[op](p, emit, now + share)
  if any(r["op"] == "nm" for r in rows):
    _summary(rows, p, emit)
  if not args.no_peer:
    peer_rows(p, emit)
  if args.write_table:
    keep = table_rows(rows)
    path = dispatch.write_rows(args.write_table, keep)
    emit(f"# wrote {len(keep)} rows to {path}")
  if _FAILURES:
    emit(f"# FAILED measurements: {', '.join(_FAILURES)}")
  emit(f"# device_check took {time.perf_counter() - t0:.0f}s; tests "
       f"{'passed' if ok else 'FAILED'}")
  return 0 if ok and not _FAILURES else 1


if __name__ == "__main__":
  sys.exit(main())
