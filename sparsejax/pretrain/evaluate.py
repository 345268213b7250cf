"""Validation loss and perplexity of a language model over a token array.

One evaluator serves the training loop (sharded over the run's mesh, each
process loading only its rows) and the benchmarks (one device, no mesh):
consecutive non-overlapping windows of the tokens (see
:func:`sparsejax.pretrain.data.sequential_windows`), batched, the last batch
padded with zero-weight windows so only one shape is compiled; the result is
the mean loss per predicted token.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from sparsejax.pretrain import data as data_lib
from sparsejax.pretrain import pipeline

__all__ = ["loss_sum_fn", "evaluate"]


def loss_sum_fn(model: nn.Module, param_shardings: Any = None,
                batch_sharding: NamedSharding | None = None
                ) -> Callable[[Any, dict[str, Any]], jax.Array]:
  """Jitted ``(params, batch) -> summed token loss`` of ``batch["weights"]``.

  Args:
    model: A Linen language model ``tokens -> logits``.
    param_shardings: Shardings of the params (with ``batch_sharding``).
    batch_sharding: Sharding of the batch arrays; ``None``: no mesh.

  Returns:
    The jitted function (reuse it across calls of :func:`evaluate`).
  """
  def fn(params, batch):
    logits = model.apply({"params": params}, batch["inputs"])
    losses = optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), batch["targets"])
    return (losses * batch["weights"][:, None]).sum()

  if batch_sharding is None:
    return jax.jit(fn)
  return jax.jit(fn, in_shardings=(param_shardings, batch_sharding),
                 out_shardings=NamedSharding(batch_sharding.mesh,
                                             PartitionSpec()))


def evaluate(model: nn.Module, params: Any, tokens: Any, *, seq_len: int,
             batch_size: int = 8, max_windows: int = 0,
             batch_sharding: NamedSharding | None = None,
             loss_sum: Callable[..., jax.Array] | None = None
             ) -> dict[str, float]:
  """Validation loss (nats per token) and perplexity of ``params``.

  Args:
    model: A Linen language model ``tokens -> logits``.
    params: Its ``params`` collection.
    tokens: 1-D token array (e.g. the validation split).
    seq_len: Window length.
    batch_size: Windows per forward pass (the global batch on a mesh).
    max_windows: Evaluate at most this many windows; 0: all.
    batch_sharding: Sharding of a batch on the run's mesh; each process then
      loads only its rows (call inside the mesh context). ``None``: no mesh.
    loss_sum: A function from :func:`loss_sum_fn` (made when omitted).

  Returns:
    ``{"loss": float, "perplexity": float, "tokens": int}``.

  Raises:
    ValueError: ``tokens`` hold less than one window.

  Example:
    >>> from sparsejax.models import gpt
    >>> model = gpt.GPT(gpt.GPTConfig(d_model=64, n_layers=2, n_heads=2,
    ...                               d_ff=128, max_len=32))
    >>> p = gpt.init_params(model, jax.random.key(0))
    >>> r = evaluate(model, p, np.arange(81) % 256, seq_len=16, batch_size=2)
    >>> r["tokens"], 200 < r["perplexity"] < 320
    (80, True)
  """
  windows = data_lib.sequential_windows(tokens, seq_len)
  n = len(windows["inputs"])
  if max_windows:
    n = min(n, max_windows)
  if n < 1:
    raise ValueError(f"need more than {seq_len} tokens, got {len(tokens)}")
  if loss_sum is None:
    loss_sum = loss_sum_fn(model, None, batch_sharding)
  rows = slice(None)
  if batch_sharding is not None:
    per = pipeline.process_rows(batch_size, jax.process_count(),
                                name="eval.batch_size")
    rows = slice(jax.process_index() * per, (jax.process_index() + 1) * per)
  total = 0.0
  for start in range(0, n, batch_size):
    k = min(batch_size, n - start)
    batch = {"inputs": np.zeros((batch_size, seq_len), np.int32),
             "targets": np.zeros((batch_size, seq_len), np.int32),
             "weights": np.zeros((batch_size,), np.float32)}
    batch["inputs"][:k] = windows["inputs"][start:start + k]
    batch["targets"][:k] = windows["targets"][start:start + k]
    batch["weights"][:k] = 1.0
    batch = {key: value[rows] for key, value in batch.items()}
    if batch_sharding is not None:
      batch = data_lib.global_batch(batch, batch_sharding)
    total += float(loss_sum(params, batch))
  loss = total / (n * seq_len)
  return {"loss": loss, "perplexity": float(math.exp(loss)),
          "tokens": n * seq_len}
