"""One-shot pruning quality on all-MiniLM-L6-v2 sentence embeddings.

Prunes the 36 encoder Dense kernels of MiniLM (q/k/v/out and the two MLP
kernels of each of the 6 layers; embeddings stay dense) with magnitude,
Wanda and SparseGPT at 50% unstructured, 2:4 and 4:8, and reports the cosine
similarity between the pruned and the dense model's sentence embeddings.

Text comes from Python's own `pydoc_data.topics`: the topics are split in
two halves; calibration windows (128 tokens, no padding) are cut from one
half and the evaluation sentences are taken from the other (held out).

Patterns follow each method's published comparison group at 50%: magnitude
per tensor, Wanda per output unit, SparseGPT per 128-row block.

Each row also reports the seconds to prune the whole model with each method:
the `prune` call (calibration passes and compilation included), not the
dense embedding pass nor the evaluation.

Needs the MiniLM weights (see `sparsejax.models.minilm.load_minilm`).

Run: python benchmarks/oneshot_quality.py [--windows 32] [--one-pass]
"""

import argparse
import dataclasses
import re
import time

import numpy as np
from pydoc_data import topics as pydoc_topics

import jax
import jax.numpy as jnp

from sparsejax.models import minilm
from sparsejax.oneshot import prune
from sparsejax.patterns import NM
from sparsejax.patterns import Unstructured
from sparsejax.rules import Rule

METHODS = ("magnitude", "wanda", "sparsegpt")  # the base pruners
KERNELS = r"layer_\d+/(attn/(query|key|value|out)|mlp/fc[12])/kernel"


def split_topics():
  names = sorted(pydoc_topics.topics)
  return ([pydoc_topics.topics[n] for n in names[0::2]],
          [pydoc_topics.topics[n] for n in names[1::2]])


def calibration_batches(encoder, texts, windows, length, batch_size):
  """Windows of `length` real tokens cut from the concatenated texts."""
  paragraphs = [p.strip() for t in texts for p in t.split("\n\n")
                if len(p.strip()) > 40]
  ids = []
  for enc in encoder.tokenizer.encode_batch(paragraphs):
    ids.extend(enc.ids)
    if len(ids) >= windows * length:
      break
  count = min(windows, len(ids) // length)
  data = np.asarray(ids[:count * length], np.int32).reshape(count, length)
  return [(jnp.asarray(data[i:i + batch_size]),
           jnp.ones((len(data[i:i + batch_size]), length), jnp.int32),
           jnp.zeros((len(data[i:i + batch_size]), length), jnp.int32))
          for i in range(0, count, batch_size)]


def evaluation_sentences(texts, count):
  sentences = []
  for text in texts:
    for piece in re.split(r"(?<=[.!?])\s+|\n\n", text):
      piece = " ".join(piece.split())
      if 40 <= len(piece) <= 300 and not piece.startswith((">>>", "...")):
        sentences.append(piece)
  return sentences[:count]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--windows", type=int, default=32)
  parser.add_argument("--length", type=int, default=128)
  parser.add_argument("--batch-size", type=int, default=16)
  parser.add_argument("--sentences", type=int, default=512)
  parser.add_argument("--one-pass", action="store_true")
  args = parser.parse_args()

  encoder = minilm.load_minilm()
  calib_texts, eval_texts = split_topics()
  batches = calibration_batches(encoder, calib_texts, args.windows,
                                args.length, args.batch_size)
  sentences = evaluation_sentences(eval_texts, args.sentences)
  dense = encoder.encode(sentences)
  print(f"calibration: {sum(b[0].size for b in batches)} tokens in "
        f"{len(batches)} batches; evaluation: {len(sentences)} held-out "
        f"sentences; {'one-pass' if args.one_pass else 'sequential'}")

  settings = {
      "50%": {"magnitude": Unstructured(0.5),
              "wanda": Unstructured(0.5, per_output=True),
              "sparsegpt": Unstructured(0.5)},
      "2:4": dict.fromkeys(METHODS, NM(2, 4)),
      "4:8": dict.fromkeys(METHODS, NM(4, 8)),
  }
  table, timing = {}, {}
  for label, per_method in settings.items():
    for method, pattern in per_method.items():
      start = time.perf_counter()
      new_params, _ = prune(encoder.model, encoder.params, batches,
                            [Rule(KERNELS, pattern)], method=method,
                            sequential=not args.one_pass)
      new_params = jax.block_until_ready(new_params)
      seconds = time.perf_counter() - start
      pruned = dataclasses.replace(encoder, params=new_params).encode(
          sentences)
      cosine = np.sum(dense * pruned, axis=1)
      table[(label, method)] = cosine
      timing[(label, method)] = seconds
      print(f"{label:4s} {method:10s} mean cosine {cosine.mean():.4f} "
            f"(min {cosine.min():.4f})  [{seconds:.1f} s]", flush=True)

  methods = METHODS
  print("\n| sparsity | magnitude | Wanda | SparseGPT | magnitude (s) | "
        "Wanda (s) | SparseGPT (s) |")
  print("|---|---|---|---|---|---|---|")
  for label in settings:
    row = " | ".join([f"{table[(label, m)].mean():.4f}" for m in methods] +
                     [f"{timing[(label, m)]:.1f}" for m in methods])
    print(f"| {label} | {row} |")


if __name__ == "__main__":
  main()
