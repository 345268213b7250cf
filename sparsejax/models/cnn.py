"""Small convolutional classifier in Flax NNX.

Parameter paths (``nnx.state(model, nnx.Param)``)::

  convs/0/kernel  (3, 3, in_channels, features[0])   # (h, w, in, out)
  convs/1/kernel  (3, 3, features[0], features[1])
  fc1/kernel      (features[-1], hidden)
  head/kernel     (hidden, num_classes)

Convolutions use ``SAME`` padding, each followed by ReLU and 2x2 average
pooling; a global average pool makes the classifier independent of the image
size. N:M along the input-channel axis (-2) applies to ``convs/1`` onwards;
the first convolution has too few input channels and is usually left dense
(e.g. rule ``convs/[1-9].*kernel``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["CNN"]


class CNN(nnx.Module):
  """``nnx.Conv`` feature extractor followed by two ``nnx.Linear`` layers.

  Args:
    in_channels: Channels of the NHWC input.
    num_classes: Number of output logits.
    features: Output channels of each 3x3 convolution.
    hidden: Width of the ``fc1`` layer.
    dtype: Computation dtype.
    param_dtype: Parameter dtype.
    rngs: ``nnx.Rngs`` used for initialisation.

  Example:
    >>> model = CNN(1, 10, features=(16, 64), hidden=64, rngs=nnx.Rngs(0))
    >>> model(jnp.ones((2, 8, 8, 1))).shape
    (2, 10)
    >>> model.convs[1].kernel.shape
    (3, 3, 16, 64)
  """

  def __init__(self,
               in_channels: int = 1,
               num_classes: int = 10,
               *,
               features: Sequence[int] = (64, 64),
               hidden: int = 128,
               dtype: Any = None,
               param_dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    chans = (in_channels, *features)
    self.convs = nnx.List([
        nnx.Conv(a, b, kernel_size=(3, 3), padding="SAME", dtype=dtype,
                 param_dtype=param_dtype, rngs=rngs)
        for a, b in zip(chans[:-1], chans[1:])
    ])
    self.fc1 = nnx.Linear(chans[-1], hidden, dtype=dtype,
                          param_dtype=param_dtype, rngs=rngs)
    self.head = nnx.Linear(hidden, num_classes, dtype=dtype,
                           param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps NHWC images ``(batch, h, w, in_channels)`` to logits."""
    for conv in self.convs:
      x = nnx.relu(conv(x))
      if x.shape[1] >= 2 and x.shape[2] >= 2:
        x = nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
    x = x.mean(axis=(1, 2))
    x = nnx.relu(self.fc1(x))
    return self.head(x)
