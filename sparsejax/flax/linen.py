"""Linen adapter: a module class whose params are seen through a sparsifier.

`sparsify(Module, sparsifier)` lifts the class with `nn.map_variables`: the
lifted module has exactly the variables of the original (same param paths,
same checkpoints) and, at apply time, reads the `SparsityState` from a
`"sparsity"` collection and applies `sparsifier.view` to its params before
the original code runs. Works with `nn.scan` and `nn.remat` inside the model
(the view is taken once, on the whole params tree, before them).
"""

import flax.linen as nn

COLLECTION = "sparsity"


def state_collection(state):
  """The variables entry that carries a `SparsityState` into `apply`.

  >>> sorted(state_collection("s"))
  ['sparsity']
  """
  return {COLLECTION: {"state": state}}


def sparsify(module_cls, sparsifier):
  """Lifts a Linen module class so its params are viewed by `sparsifier`.

  Args:
    module_cls: any `nn.Module` subclass (its fields are unchanged).
    sparsifier: a sparsejax sparsifier; its rules match the module's own
      param paths (no `params/` prefix: e.g. `fc1/kernel`).

  Returns:
    A module class. `init` is unchanged; `apply` takes
    `{"params": params, **state_collection(state)}` (without the sparsity
    collection it runs dense).

  >>> import flax.linen as nn, sparsejax as sj
  >>> sp = sj.ste_nm(sj.NM(2, 4))
  >>> SparseDense = sparsify(nn.Dense, sp)
  >>> variables = SparseDense(3).init(jax.random.key(0), jnp.ones((1, 8)))
  >>> state = sp.init(variables["params"])
  >>> y = SparseDense(3).apply({**variables, **state_collection(state)},
  ...                          jnp.ones((1, 8)))
  >>> y.shape
  (1, 3)
  """

  def view(variables):
    state = variables.get(COLLECTION, {}).get("state")
    if state is None or "params" not in variables:
      return variables
    return {**variables, "params": sparsifier.view(variables["params"], state)}

  return nn.map_variables(module_cls, ("params", COLLECTION), trans_in_fn=view,
                          init=True)
