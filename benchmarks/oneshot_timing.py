"""Seconds to prune one 4096x4096 Dense layer with SparseGPT (CPU).

Calibration: 2048 tokens, streamed in 8 batches of 256 through
`sparsejax.oneshot.accumulate` (the Hessian `Σ x xᵀ`). Pruning:
`sparsejax.oneshot.sparsegpt_layer` at 50% unstructured and at 2:4, block
size 128, 1% dampening. Reported: the Hessian accumulation, the first call
(compilation included) and the best of the following calls.

Run: python benchmarks/oneshot_timing.py [--size 4096] [--tokens 2048]
"""

import argparse
import time

import jax
import jax.numpy as jnp

from sparsejax.oneshot import accumulate
from sparsejax.oneshot import init_stats
from sparsejax.oneshot import sparsegpt_layer
from sparsejax.patterns import NM
from sparsejax.patterns import Unstructured


def timed(fn, *args):
  start = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  return time.perf_counter() - start, out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", type=int, default=4096)
  parser.add_argument("--tokens", type=int, default=2048)
  parser.add_argument("--batches", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args()
  n, tokens = args.size, args.tokens
  key_x, key_w = jax.random.split(jax.random.key(0))
  # Correlated inputs with uneven feature scales, like real activations.
  base = jax.random.normal(key_x, (tokens, n))
  x = (base + 0.5 * jnp.roll(base, 1, axis=1)) * jnp.exp(
      jnp.sin(jnp.arange(n, dtype=jnp.float32)))
  w = jax.random.normal(key_w, (n, n)) / jnp.sqrt(n)
  batches = jnp.split(x, args.batches)
  step = jax.jit(accumulate)

  def hessian():
    stats = init_stats(n)
    for b in batches:
      stats = step(stats, b)
    return stats.hessian()

  jax.block_until_ready(step(init_stats(n), batches[0]))  # compile
  t_hessian, h = timed(hessian)
  print(f"device: {jax.devices()[0].device_kind}, layer {n}x{n}, "
        f"{tokens} calibration tokens")
  print(f"Hessian accumulation (streamed, {args.batches} batches): "
        f"{t_hessian:.2f} s")
  for pattern in (Unstructured(0.5), NM(2, 4)):
    prune = lambda w, h, p=pattern: sparsegpt_layer(w, h, p)
    first, (new, keep) = timed(prune, w, h)
    rest = [timed(prune, w, h)[0] for _ in range(args.repeats)]
    best = min(rest) if rest else first
    xe = x[:512]
    rel = float(jnp.sum((xe @ w - xe @ new) ** 2) / jnp.sum((xe @ w) ** 2))
    print(f"SparseGPT {str(pattern):18s} first call (with compile) "
          f"{first:6.2f} s | pruning {best:6.2f} s | Hessian + pruning "
          f"{t_hessian + best:6.2f} s | kept {float(keep.mean()):.3f} | "
          f"relative output error {rel:.4f}")


if __name__ == "__main__":
  main()
