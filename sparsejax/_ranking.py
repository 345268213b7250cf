"""Exact, deterministic top-k selection primitives shared by every pattern.

Two primitives cover all patterns:

* `keep_top_n_in_groups` ranks the entries of small groups (N:M) with a few
  elementwise comparisons per group member: no sort and no transpose.
* `keep_top_k` keeps the k largest entries of every row of a 2-D array with a
  32-step bisection over an order-preserving integer key (a threshold search),
  which is far cheaper on CPU than sorting millions of entries.

Both keep exactly the requested count. Ties are broken by position (the lower
index wins) and NaN scores rank below every finite score and below -inf.
"""

from typing import Any

import jax
import jax.numpy as jnp


def finite_first(scores: jax.Array) -> jax.Array:
  """Replaces NaN by -inf so a NaN score is never preferred to a number."""
  return jnp.where(jnp.isnan(scores), -jnp.inf, scores)


def order_key(scores: jax.Array) -> jax.Array:
  """Maps floats to uint32 keys whose unsigned order is the float order.

  NaN maps below -inf; -0.0 maps just below +0.0 (a deterministic choice).
  """
  f32 = scores.astype(jnp.float32)
  bits = jax.lax.bitcast_convert_type(f32, jnp.int32)
  # Negative floats: flipping the 31 value bits reverses their order.
  signed = jnp.where(bits < 0, bits ^ jnp.int32(0x7FFFFFFF), bits)
  key = jax.lax.bitcast_convert_type(signed, jnp.uint32) ^ jnp.uint32(0x80000000)
  # NaN (either sign) goes to 0, below -inf (whose key is 0x007FFFFF).
  return jnp.where(jnp.isnan(f32), jnp.uint32(0), key)


def keep_top_n_in_groups(scores: jax.Array, n: int, axis: int,
                         m: int) -> jax.Array:
  """Keeps the `n` largest of every `m` consecutive entries along `axis`.

  The group axis stays in place: the array is viewed as (..., G, m, ...) and
  each member is ranked by counting the members whose order key beats it.
  """
  axis = axis % scores.ndim
  shape = scores.shape
  grouped = order_key(scores).reshape(
      shape[:axis] + (shape[axis] // m, m) + shape[axis + 1:])
  gaxis = axis + 1
  members = [jax.lax.index_in_dim(grouped, j, gaxis, keepdims=True)
             for j in range(m)]
  index = jax.lax.broadcasted_iota(jnp.int32, grouped.shape, gaxis)
  rank = jnp.zeros(grouped.shape, jnp.int32)
  for j, other in enumerate(members):
    beats = (other > grouped) | ((other == grouped) & (j < index))
    rank = rank + beats.astype(jnp.int32)
  return (rank < n).reshape(shape)


def keep_top_k(rows: jax.Array, k: Any) -> jax.Array:
  """Keeps the `k` largest entries of every row of a 2-D score array.

  `k` may be a Python int or a traced int32 scalar (so a schedule can move it
  without recompiling). Exactly `min(k, row length)` entries are kept per row.
  """
  key = order_key(rows)
  length = rows.shape[1]
  k = jnp.clip(jnp.asarray(k, jnp.int32), 0, length)

  def bisect(bit, threshold):
    candidate = threshold | (jnp.uint32(1) << (31 - bit).astype(jnp.uint32))
    count = jnp.sum(key >= candidate[:, None], axis=1, dtype=jnp.int32)
    return jnp.where(count >= k, candidate, threshold)

  # The largest t with count(key >= t) >= k is the k-th largest key.
  threshold = jax.lax.fori_loop(
      0, 32, bisect, jnp.zeros((rows.shape[0],), jnp.uint32))
  above = key > threshold[:, None]
  at = key == threshold[:, None]
  room = k - jnp.sum(above, axis=1, dtype=jnp.int32)
  tie_rank = jnp.cumsum(at, axis=1, dtype=jnp.int32)
  keep = above | (at & (tie_rank <= room[:, None]))
  return keep & (k > 0)
