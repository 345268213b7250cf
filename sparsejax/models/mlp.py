"""Multi-layer perceptron in Flax NNX.

Parameter paths (``nnx.state(model, nnx.Param)``)::

  hidden/0/kernel  (in_features, hidden[0])
  hidden/0/bias
  hidden/1/kernel  (hidden[0], hidden[1])
  ...
  head/kernel      (hidden[-1], out_features)

A rule such as ``.*hidden.*kernel`` selects the hidden layers and leaves the
output ``head`` dense.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["MLP"]


class MLP(nnx.Module):
  """A stack of ``nnx.Linear`` layers with an activation between them.

  Args:
    in_features: Input dimension.
    hidden: Widths of the hidden layers (multiples of 64 suit every N:M
      pattern of the library).
    out_features: Output dimension.
    activation: Activation after each hidden layer.
    dtype: Computation dtype.
    param_dtype: Parameter dtype.
    rngs: ``nnx.Rngs`` used for initialisation.

  Example:
    >>> model = MLP(4, (64, 64), 3, rngs=nnx.Rngs(0))
    >>> model(jnp.ones((2, 4))).shape
    (2, 3)
    >>> model.hidden[1].kernel.shape
    (64, 64)
  """

  def __init__(self,
               in_features: int,
               hidden: Sequence[int] = (64, 64),
               out_features: int = 1,
               *,
               activation: Callable[[jax.Array], jax.Array] = nnx.relu,
               dtype: Any = None,
               param_dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    sizes = (in_features, *hidden)
    self.hidden = nnx.List([
        nnx.Linear(a, b, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        for a, b in zip(sizes[:-1], sizes[1:])
    ])
    self.head = nnx.Linear(sizes[-1], out_features, dtype=dtype,
                           param_dtype=param_dtype, rngs=rngs)
    self.activation = activation

  def __call__(self, x: jax.Array) -> jax.Array:
    for layer in self.hidden:
      x = self.activation(layer(x))
    return self.head(x)
