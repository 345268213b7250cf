"""Masks of sharded params: no collectives for N:M, sharding preserved.

Runs on the 8 host devices the root conftest requests.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import sparsejax as sj

COLLECTIVES = re.compile(
    r"\b(all-gather|all-reduce|all-to-all|collective-permute|reduce-scatter)"
    r"(-start)?\(")


@pytest.fixture(scope="module")
def mesh():
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices (XLA_FLAGS set before JAX starts)")
  return Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))


def _compiled(fn, x, sharding):
  jitted = jax.jit(fn, in_shardings=sharding, out_shardings=sharding)
  return jitted, jitted.lower(x).compile().as_text()


@pytest.mark.parametrize("spec", [P("data", "model"), P("model", None),
                                  P(None, "model"), P(("data", "model"))])
@pytest.mark.parametrize("pattern", [sj.NM(2, 4), sj.NM(1, 8),
                                     sj.NM(2, 4, transposable=True)])
def test_nm_mask_has_no_collectives(mesh, spec, pattern):
  w = jax.random.normal(jax.random.key(0), (256, 128))
  sharding = NamedSharding(mesh, spec)
  w = jax.device_put(w, sharding)
  jitted, hlo = _compiled(lambda x: pattern.mask(jnp.abs(x)), w, sharding)
  assert not COLLECTIVES.search(hlo), COLLECTIVES.findall(hlo)
  out = jitted(w)
  assert out.sharding.is_equivalent_to(sharding, 2)
  np.testing.assert_array_equal(out, pattern.mask(jnp.abs(np.asarray(w))))


def test_block_mask_never_gathers_the_param(mesh):
  """Block pooling is shard-local; only the small block-score grid is reduced."""
  w = jax.random.normal(jax.random.key(1), (256, 256))
  sharding = NamedSharding(mesh, P("data", "model"))
  w = jax.device_put(w, sharding)
  pattern = sj.Block((32, 32), 0.75)
  jitted, hlo = _compiled(lambda x: pattern.mask(jnp.abs(x)), w, sharding)
  n_blocks = (256 // 32) ** 2
  for line in hlo.splitlines():
    if COLLECTIVES.search(line):
      dims = re.findall(r"\[([\d,]*)\]", line.split("=", 1)[1])
      sizes = [int(np.prod([int(d) for d in s.split(",") if d])) for s in dims]
      assert max(sizes, default=1) <= n_blocks, line
  out = jitted(w)
  assert out.sharding.is_equivalent_to(sharding, 2)
  np.testing.assert_array_equal(out, pattern.mask(jnp.abs(np.asarray(w))))


def test_packed_mask_keeps_sharding_without_collectives(mesh):
  mask = jax.random.uniform(jax.random.key(2), (64, 256)) > 0.5
  sharding = NamedSharding(mesh, P("data", "model"))
  mask = jax.device_put(mask, sharding)
  jitted, hlo = _compiled(lambda m: sj.pack_masks({"m": m})["m"].bits, mask,
                          sharding)
  assert not COLLECTIVES.search(hlo), COLLECTIVES.findall(hlo)
  bits = jitted(mask)
  assert bits.shape == (64, 32)
  assert bits.sharding.is_equivalent_to(sharding, 2)
