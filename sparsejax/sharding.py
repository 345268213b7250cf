"""Sharding of sparsity and optimizer state: it follows the params.

A mask has its param's shape and is computed shard-locally for N:M and block
patterns, so it should live on its param's devices. `like_params` gives every
leaf of any state tree (masks, `SparsityState`, optimizer moments) the
sharding of the param it belongs to (matched by path suffix and shape, see
`sparsejax.rules.param_of`); everything else (steps, scalars, dense-leaf
markers, factored moments) is replicated.
"""

import jax
from jax.sharding import NamedSharding, PartitionSpec

from sparsejax import rules as rules_lib


def like_params(tree, params, param_shardings, mesh):
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
