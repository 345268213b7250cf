"""The key of a measured case: device kind, op, pattern, dtype, shape and
batch bucket (:class:`Key`), and the buckets a measurement covers.

Re-exported by :mod:`pallas_kernels.dispatch`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax

__all__ = ["Key", "batch_bucket", "density_bucket", "DENSITY_BUCKETS",
           "device_kind"]


@dataclasses.dataclass(frozen=True)
class Key:
  """One measured case.

  >>> Key("NVIDIA H200", "nm", "2:4", "bfloat16", (4096, 4096), 8).as_dict()["batch"]
  8
  """
  device_kind: str
  op: str
  pattern: str
  dtype: str
  shape: tuple[int, ...]
  batch: int

  def as_dict(self) -> dict[str, Any]:
    return dict(device_kind=self.device_kind, op=self.op, pattern=self.pattern,
                dtype=self.dtype, shape=list(self.shape), batch=self.batch)

  @classmethod
  def of_row(cls, row: Mapping[str, Any]) -> "Key":
    return cls(row["device_kind"], row["op"], row["pattern"], row["dtype"],
               tuple(row["shape"]), int(row["batch"]))


def batch_bucket(batch: int) -> int:
  """The batch bucket a measurement covers: the next power of two.

  >>> [batch_bucket(b) for b in (1, 2, 3, 8, 9, 16)]
  [1, 2, 4, 8, 16, 16]
  """
  if batch < 1:
    raise ValueError(f"batch must be >= 1, got {batch}.")
  return 1 << (int(batch) - 1).bit_length()


DENSITY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0)
"""Upper edges of the stored-density buckets of block-sparse patterns."""


def density_bucket(density: float) -> float:
  """The density bucket a measurement covers: the next edge at or above it.

  A case measured at a bucket's edge does at least the work of any case in
  the bucket, so a kernel measured faster there is not slower below it.

  >>> [density_bucket(d) for d in (0.01, 0.0996, 0.1, 0.12, 0.25, 0.7)]
  [0.05, 0.1, 0.1, 0.25, 0.25, 1.0]
  """
  if not 0.0 <= density <= 1.0 + 1e-9:
    raise ValueError(f"density must be in [0, 1], got {density}.")
  return next(b for b in DENSITY_BUCKETS if density <= b + 1e-9)


def device_kind(platform: str | None = None) -> str | None:
  """The device kind of ``platform`` (default backend), or None if absent.

  >>> isinstance(device_kind(), str)
  True
  """
  try:
    devices = jax.devices(platform) if platform else jax.devices()
  except RuntimeError:
    return None
  return devices[0].device_kind if devices else None
