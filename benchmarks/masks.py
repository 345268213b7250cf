"""Seconds to compute one mask of a 4096x4096 f32 tensor, per pattern.

Run: `python -m benchmarks.masks [--size 4096] [--reps 5]`. Jitted, after a
warm-up call; prints the median over `reps` calls. Compile time is reported
separately.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

import sparsejax as sj

PATTERNS = [
    sj.NM(2, 4), sj.NM(1, 8), sj.NM(1, 16), sj.NM(2, 4, transposable=True),
    sj.Unstructured(0.5), sj.Unstructured(0.9),
    sj.Unstructured(0.5, per_output=True), sj.Block((32, 32), 0.75),
    sj.Channel(0.5),
]


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--size", type=int, default=4096)
  parser.add_argument("--reps", type=int, default=5)
  args = parser.parse_args()
  w = jax.random.normal(jax.random.key(0), (args.size, args.size))
  print(f"jax {jax.__version__}, {jax.devices()[0].platform}, "
        f"{args.size}x{args.size} f32, median of {args.reps}")
  print(f"{'pattern':28s} {'compile s':>10s} {'mask s':>8s}")
  for pattern in PATTERNS:
    fn = jax.jit(lambda s, p=pattern: p.mask(jnp.abs(s)))
    start = time.perf_counter()
    fn(w).block_until_ready()
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(args.reps):
      start = time.perf_counter()
      fn(w).block_until_ready()
      times.append(time.perf_counter() - start)
    print(f"{str(pattern):28s} {compile_s:10.2f} {statistics.median(times):8.3f}")


if __name__ == "__main__":
  main()
