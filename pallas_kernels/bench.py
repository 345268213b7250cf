"""Kernel benchmarks: ``python -m pallas_kernels.bench [--op nm|block|all]``.

Prints, per shape, batch and implementation, the ratio dense/sparse and
masked-dense/sparse (XLA dense ``jnp.dot`` at the same dtype on a random and
on the masked weight, interleaved in the same process, after warm-up), the
fraction of the physical bound, achieved GB/s and its fraction of the
device's peak, TFLOP/s (useful FLOPs of the sparse product), and the
device and versions. Every time is device time: a
chain of ``--chain`` dependent calls in one program divided by its length,
median of ``--reps`` >= 20 repetitions; compile and format conversion are
excluded and reported separately. Only the current backend is measured;
rows for other devices are reported as unmeasured, never estimated.
"""
from __future__ import annotations

import argparse
import statistics
import sys

import jax
import jax.numpy as jnp

from pallas_kernels import _timing
from pallas_kernels.block_sparse import bench as blk_bench
from pallas_kernels.nm import bench as nm_bench

__all__ = ["main", "parse_shapes"]

_LLM_SHAPES = "4096x4096,4096x14336,14336x4096"
_ALL_BATCHES = "1,2,4,8,16,32,64,128,256,512"
_PATTERNS = "2:4,1:4,2:8,1:8,1:16"


def parse_shapes(text: str):
  """Parses ``"KxN,KxN"``.

  >>> parse_shapes("128x256,64x64")
  [(128, 256), (64, 64)]
  """
  out = []
  for item in text.split(","):
    k, n = item.lower().split("x")
    out.append((int(k), int(n)))
  return out


def _ints(text):
  return [int(v) for v in text.split(",") if v]


def main(argv=None) -> int:
  """Runs the benchmarks; returns the exit status.

  >>> main(["--op", "nm", "--shapes", "64x128", "--batches", "1",
  ...       "--patterns", "2:4", "--reps", "2", "--chain", "2"])
  note: --reps=2 < 20, figures are not reportable
  ...
  0
  """
  accel = jax.default_backend() in ("gpu", "tpu")
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--op", default="all", choices=("nm", "block", "all"))
  ap.add_argument("--shapes", default=_LLM_SHAPES if accel else
                  "1024x1024,1024x2816")
  ap.add_argument("--batches", default=_ALL_BATCHES if accel else "1,8,64")
  ap.add_argument("--patterns", default=_PATTERNS)
  ap.add_argument("--blocks", default="128,256,512" if accel else "64,128")
  ap.add_argument("--densities", default="0.1,0.25,0.5")
  ap.add_argument("--dtype", default="bfloat16",
                  choices=("bfloat16", "float32"))
  ap.add_argument("--implementations", default=None,
                  help="comma-separated names passed to the ops (default: xla "
                  "and every kernel native to this backend); a kernel not "
                  "native here runs in interpret mode")
  ap.add_argument("--reps", type=int, default=20)
  ap.add_argument("--chain", type=int, default=32,
                  help="dependent calls per timed program")
  args = ap.parse_args(argv)
  if args.reps < 20:
    print(f"note: --reps={args.reps} < 20, figures are not reportable")
  dtype = jnp.dtype(args.dtype)
  print("# " + _timing.environment())
  impls = args.implementations.split(",") if args.implementations else None
  print(f"# backend={jax.default_backend()} reps={args.reps} "
        f"chain={args.chain} dtype={dtype.name} "
        f"implementations={args.implementations or 'xla + native kernels'}")
  if not accel:
    print("# GPU (H100, Triton) and TPU (Mosaic) rows: UNMEASURED -- no "
          "accelerator in this process. CPU rows time the XLA path "
          "(expansion + dot) unless --implementations names a kernel, which "
          "then runs in interpret mode and measures the interpreter, not the "
          "kernel.")
  print("# impl ending in '*' ran in Pallas interpret mode (times the "
        "interpreter)")
  print("# d/s = dense_us / sparse_us (dense = random weight), md/s = "
        "masked_us / sparse_us (the masked weight, same XLA dot); bound = "
        "16/bpe with bit-packed indices (N:M) or 1/density (block); frac = "
        "d/s / bound; GB/s = bytes moved / sparse time; %peak of the "
        "device's HBM bandwidth (blank if unknown)")
  rows = []
  if args.op in ("nm", "all"):
    print("\n" + nm_bench.HEADER)
    patterns = [tuple(int(v) for v in p.split(":"))
                for p in args.patterns.split(",")]
    rows += nm_bench.run(parse_shapes(args.shapes), _ints(args.batches),
                         patterns, dtype, impls, args.reps, length=args.chain)
  if args.op in ("block", "all"):
    print("\n" + nm_bench.HEADER)
    rows += blk_bench.run(parse_shapes(args.shapes), _ints(args.batches),
                          _ints(args.blocks),
                          [float(v) for v in args.densities.split(",")],
                          dtype, impls, args.reps, length=args.chain)
  if rows:
    compile_s = statistics.median(r["compile_s"] for r in rows)
    print(f"\n# compile (excluded) median {compile_s:.3f}s"
          f"; format conversion (excluded) median "
          f"{statistics.median(r['convert_s'] for r in rows) * 1e3:.1f}ms")
    kernels = [r["compile_s"] for r in rows if r["implementation"] != "xla"]
    if kernels:
      print(f"# kernel compile (excluded) median "
            f"{statistics.median(kernels):.3f}s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
