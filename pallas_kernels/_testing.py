"""Small helpers for the kernel tests, benchmarks and device check (no ``sparsejax``).

``PALLAS_KERNELS_NATIVE=1`` asks the kernel tests to run the Pallas kernels
natively on the current accelerator (no interpret mode): :func:`native`
reads it and :func:`kernel_implementations` lists what a test should run.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["nm_mask", "random_block_mask", "native", "kernel_implementations", "ENV_NATIVE"]

ENV_NATIVE = "PALLAS_KERNELS_NATIVE"


def nm_mask(w: jax.Array, n: int, m: int) -> jax.Array:
  """The N:M mask keeping the ``n`` largest ``|w|`` of every ``m`` along axis 0.

  Ties keep the lower index. ``w`` is ``(K, N)`` with ``K % m == 0``.

  >>> w = jnp.array([[1.0], [-3.0], [2.0], [0.5]])
  >>> nm_mask(w, 2, 4)[:, 0].tolist()
  [False, True, True, False]
  """
  if w.ndim != 2 or w.shape[0] % m:
    raise ValueError(f"w must be (K, N) with K divisible by m={m}, got shape "
                     f"{w.shape}.")
  k, cols = w.shape
  scores = jnp.abs(w.astype(jnp.float32)).reshape(k // m, m, cols)
  scores = jnp.moveaxis(scores, 1, -1)                   # (K/m, N, m)
  _, idx = jax.lax.top_k(scores, n)                      # (K/m, N, n)
  keep = jax.nn.one_hot(idx, m, dtype=jnp.int32).sum(-2) > 0
  return jnp.moveaxis(keep, -1, 1).reshape(k, cols)


def random_block_mask(grid: tuple[int, int], keep: int,
                      seed: int = 0) -> np.ndarray:
  """A ``grid`` block mask with exactly ``keep`` blocks, at random places.

  >>> m = random_block_mask((4, 8), 5)
  >>> m.shape, int(m.sum())
  ((4, 8), 5)
  """
  total = grid[0] * grid[1]
  if not 0 <= keep <= total:
    raise ValueError(f"keep must be in [0, {total}] for a {grid} block grid, "
                     f"got {keep}.")
  mask = np.zeros(total, bool)
  mask[np.random.default_rng(seed).permutation(total)[:keep]] = True
  return mask.reshape(grid)


def native() -> bool:
  """Whether ``PALLAS_KERNELS_NATIVE`` asks for native (not interpreted) kernels.

  >>> isinstance(native(), bool)
  True
  """
  return os.environ.get(ENV_NATIVE, "").strip().lower() in ("1", "true", "yes",
                                                            "on")


def kernel_implementations(candidates: Mapping[str, str],
                           platform: str | None = None) -> list[str]:
  """The kernel implementations a test should run.

  All of them (interpret mode where not native) normally; with
  ``PALLAS_KERNELS_NATIVE=1`` only those native to the backend, run natively,
  and an error if there are none (the switch is for a GPU/TPU machine).

  Args:
    candidates: implementation name -> platform it runs natively on.
    platform: the backend (default: the current one).

  >>> kernel_implementations({"pallas_tpu": "tpu", "pallas_gpu": "gpu"})
  ['pallas_tpu', 'pallas_gpu']
  """
  if not native():
    return list(candidates)
  platform = platform or jax.default_backend()
  names = [c for c, p in candidates.items() if p == platform]
  if not names:
    raise RuntimeError(f"{ENV_NATIVE}=1 but backend {platform!r} runs none of "
                       f"{sorted(candidates)} natively.")
  return names
