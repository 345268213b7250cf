"""Serve exported (compressed) kernels with the model code unchanged.

`sparsejax.deploy.export(params, masks, rules)` turns targeted kernels into
compressed formats (`NMCompressed`, `PaddedBlockSparse`, `BSR`). Inside
`serving()`, every dense layer whose kernel is compressed runs its matmul
through `pallas_kernels` (`nm_matmul`, `block_sparse_matmul`, which pick a
Pallas kernel or the XLA fallback by backend and batch); other layers run as
usual. It rides on the library's one interception of dense layer calls
(`sparsejax.flax.intercept`), so it covers Linen and NNX alike:

* **Linen**: pass the exported tree as the params::

      exported = sj.deploy.export(params, masks, rules)
      with serving():
        logits = model.apply({"params": exported}, tokens)

* **NNX**: install the exported tree into the model with `nnx.update` (the
  `nnx.Linear` kernels then hold compressed values at their usual paths),
  and name the model so errors name the layer::

      nnx.update(model, sj.deploy.export(nnx.to_pure_dict(nnx.state(model, nnx.Param)),
                                  masks, rules))
      with serving(model=model):
        logits = model(tokens)

The kernel ops load on first use: importing this module does not import
Pallas.
"""

import contextlib
from typing import Any

import jax
from pallas_kernels import formats

from sparsejax.flax import intercept

COMPRESSED = (formats.NMCompressed, formats.BSR, formats.PaddedBlockSparse)


def _in_features(kernel):
  return kernel.shape[0]


def _matmul(x, kernel, implementation):
  import pallas_kernels  # The ops (and Pallas) load here, on first use.
  if isinstance(kernel, formats.NMCompressed):
    return pallas_kernels.nm_matmul(x, kernel, implementation=implementation)
  return pallas_kernels.block_sparse_matmul(x, kernel,
                                            implementation=implementation)


def serving_handler(implementation: str | None = None):
  """The interception handler `serving` installs (for composing by hand).

  Args:
    implementation: passed to the kernels: None (automatic), "xla",
      "pallas", "pallas_tpu" or "pallas_gpu".

  Returns:
    `handler(call, proceed)` for `intercept_dense`: compressed kernels run
    on the kernels, anything else proceeds unchanged.
  """

  def handle(call: intercept.DenseCall, proceed):
    kernel = call.kernel
    if not isinstance(kernel, COMPRESSED):
      return proceed()
    x = call.inputs
    if x.shape[-1] != _in_features(kernel):
      if call.path is not None:
        where = (f"layer {call.path!r} (kernel "
                 f"{(call.path + '/kernel').lstrip('/')!r})")
      else:
        where = (f"a {type(call.module).__name__} layer (pass "
                 "serving(model=model) to name it)")
      raise ValueError(
          f"{where} received inputs of width {x.shape[-1]} (shape "
          f"{tuple(x.shape)}), but its compressed kernel "
          f"{type(kernel).__name__} has K={_in_features(kernel)} input "
          "features.")
    if call.dtype is not None:
      x = x.astype(call.dtype)
    y = _matmul(x, kernel, implementation)
    if call.bias is not None:
      y = y + call.bias
    return y

  return handle


@contextlib.contextmanager
def serving(implementation: str | None = None, *, model: Any = None):
  """Routes dense layers with compressed kernels to the sparse kernels.

  Args:
    implementation: passed to the kernels: None (automatic), "xla",
      "pallas", "pallas_tpu" or "pallas_gpu".
    model: an NNX model, to name its layers in errors (Linen layers know
      their paths).

  Yields:
    None.

  Linen:

  >>> import flax.linen as nn, sparsejax as sj
  >>> layer = nn.Dense(16)
  >>> params = layer.init(jax.random.key(0), jnp.ones((1, 64)))["params"]
  >>> masks = sj.compute_masks(params, sj.NM(2, 4))
  >>> sparse = sj.apply_masks(params, masks)
  >>> exported = sj.deploy.export(sparse, masks, sj.NM(2, 4))
  >>> type(exported["kernel"]).__name__
  'NMCompressed'
  >>> with serving():
  ...   y = layer.apply({"params": exported}, jnp.ones((1, 64)))
  >>> bool(jnp.allclose(y, layer.apply({"params": sparse}, jnp.ones((1, 64))),
  ...                   atol=1e-5))
  True

  NNX (the exported tree installs with `nnx.update`):

  >>> from flax import nnx
  >>> model = nnx.Sequential(nnx.Linear(64, 16, rngs=nnx.Rngs(0)))
  >>> params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  >>> masks = sj.compute_masks(params, sj.NM(2, 4))
  >>> nnx.update(model, sj.apply_masks(params, masks))
  >>> dense = model(jnp.ones((1, 64)))
  >>> nnx.update(model, sj.deploy.export(sj.apply_masks(params, masks), masks,
  ...                                    sj.NM(2, 4)))
  >>> type(model.layers[0].kernel.get_value()).__name__
  'NMCompressed'
  >>> with serving(model=model):
  ...   y = model(jnp.ones((1, 64)))
  >>> bool(jnp.allclose(y, dense, atol=1e-5))
  True
  """
  with intercept.intercept_dense(serving_handler(implementation), model):
    yield


def decompress(tree: Any) -> Any:
  """Expands every compressed leaf of an exported tree back to dense.

  >>> import sparsejax as sj
  >>> params = {"fc": {"kernel": jnp.arange(256.).reshape(64, 4)}}
  >>> masks = sj.compute_masks(params, sj.NM(2, 4))
  >>> exported = sj.deploy.export(sj.apply_masks(params, masks), masks, sj.NM(2, 4))
  >>> type(exported["fc"]["kernel"]).__name__
  'NMCompressed'
  >>> back = decompress(exported)
  >>> bool((back["fc"]["kernel"] == sj.apply_masks(params, masks)["fc"]["kernel"]).all())
  True
  """
  return jax.tree.map(
      lambda x: formats.decompress(x) if isinstance(x, COMPRESSED) else x,
      tree, is_leaf=lambda x: isinstance(x, COMPRESSED))
