"""Sharding of sparsity and optimizer state: it follows the params.

A mask has its param's shape and is computed shard-locally for N:M and block
patterns, so it should live on its param's devices. `like_params` gives every
leaf of any state tree (masks, `SparsityState`, optimizer moments) the
sharding of the param it belongs to (matched by path suffix and shape, see
`sparsejax.rules.param_of`); everything else (steps, scalars, dense-leaf
markers, factored moments) is replicated.

Two helpers serve code that runs under a mesh with explicit axes
(`jax.sharding.AxisType.Explicit`): `explicit_sharding` says whether an array
is sharded over one, and `sharded_mask` computes a pattern's mask there,
gathering the scores only when the pattern ranks across shards.
"""

from typing import Any

import jax
from jax.sharding import NamedSharding, PartitionSpec

from sparsejax import patterns as patterns_lib
from sparsejax import rules as rules_lib


def like_params(tree: Any, params: Any, param_shardings: Any,
                mesh: Any) -> Any:
  """Shardings for `tree` that follow the params' shardings.

  Args:
    tree: any pytree of arrays (or shape-dtype structs), e.g. an optimizer
      state built with `sparsejax.wrap`.
    params: the params pytree (arrays or shape-dtype structs).
    param_shardings: a pytree like `params` of `jax.sharding.Sharding`.
    mesh: the mesh for replicated leaves.

  Returns:
    A pytree like `tree` of shardings, for `jax.device_put` or
    `jax.jit(out_shardings=...)`.

  >>> from jax.sharding import Mesh
  >>> mesh = Mesh(jax.devices()[:1], ("data",))
  >>> params = {"w": jnp.ones((4, 2))}
  >>> shardings = {"w": NamedSharding(mesh, PartitionSpec("data"))}
  >>> out = like_params({"mu": {"w": jnp.ones((4, 2))}, "count": jnp.zeros(())},
  ...                   params, shardings, mesh)
  >>> out["mu"]["w"].spec == PartitionSpec("data"), out["count"].spec == PartitionSpec()
  (True, True)
  """
  shapes = {path: tuple(leaf.shape)
            for path, leaf in rules_lib.named_leaves(params)}
  by_path = dict(rules_lib.named_leaves(param_shardings))
  replicated = NamedSharding(mesh, PartitionSpec())

  def one(keypath, leaf):
    owner = rules_lib.param_of(rules_lib.path_str(keypath),
                               getattr(leaf, "shape", ()), shapes)
    return replicated if owner is None else by_path[owner]

  return jax.tree_util.tree_map_with_path(one, tree)


def explicit_sharding(x: Any) -> NamedSharding | None:
  """`x`'s `NamedSharding` when it is sharded over an explicit mesh, else None.

  Works on arrays and tracers alike (it reads the type, not the value).

  >>> explicit_sharding(jnp.ones(3)) is None
  True
  """
  sharding = getattr(jax.typeof(x), "sharding", None)
  mesh = getattr(sharding, "mesh", None)
  if mesh is None or mesh.empty or not any(
      t == jax.sharding.AxisType.Explicit for t in mesh.axis_types):
    return None
  return sharding


def sharded_mask(pattern: patterns_lib.Pattern, scores: jax.Array,
                 path: str = "") -> jax.Array:
  """`pattern.mask(scores)` that also works under explicit sharding.

  N:M and per-output rankings are shard-local along the output axis. Any
  other ranking (a tensor- or block-wide order) needs the scores it ranks in
  one place: under explicit sharding they are gathered first and the mask is
  sharded back like the scores.

  Args:
    pattern: a `sparsejax` pattern.
    scores: the scores it ranks (any sharding).
    path: the leaf's name for error messages.

  Returns:
    A bool mask of the scores' shape and sharding.

  >>> sharded_mask(patterns_lib.NM(1, 2), jnp.array([[1.], [2.]])).tolist()
  [[False], [True]]
  """
  sharding = explicit_sharding(scores)
  local = pattern.is_nm or (pattern.is_unstructured and pattern.per_output)
  if sharding is None or local:
    return pattern.mask(scores, path=path)
  replicated = NamedSharding(sharding.mesh, PartitionSpec())
  keep = pattern.mask(jax.sharding.reshard(scores, replicated), path=path)
  return jax.sharding.reshard(keep, sharding)
