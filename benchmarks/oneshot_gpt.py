"""One-shot pruning quality on the GPT of the pretraining job.

Takes the dense GPT that ``python -m sparsejax.pretrain --config dense``
trains on the embedded ``pydoc_data`` corpus
(training it first if ``--workdir`` holds no finished dense run), prunes
every transformer-block kernel (attention q/k/v/out and MLP fc1/fc2;
embeddings and ``lm_head`` stay dense) with magnitude, Wanda and SparseGPT
at 50% unstructured, 2:4 and 4:8, and reports the validation loss (nats per
byte) and perplexity on the held-out split, next to the dense model.

Calibration: ``--windows`` windows (128) of ``data.seq_len`` tokens drawn
from the training split, layers pruned sequentially (each layer calibrated
on the outputs of the layers already pruned). Patterns follow each method's
published comparison group at 50%, as in ``benchmarks/oneshot_quality.py``:
magnitude per tensor, Wanda per output unit, SparseGPT per 128-column block.
The reported seconds are the whole ``prune`` call (calibration passes and
compilation included; evaluation excluded).

A workdir of the embedded default (``python -m sparsejax.pretrain`` with no
config) is accepted too: its dense baseline arm has the same config as the
dense variant.

Run: python -m benchmarks.oneshot_gpt [--workdir DIR] [--windows 128]
"""

import argparse
import os
import time

import jax
import numpy as np

from sparsejax.oneshot import prune
from sparsejax.patterns import NM
from sparsejax.patterns import Unstructured
from sparsejax.pretrain import checkpoint as ckpt_lib
from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import pipeline
from sparsejax.pretrain import evaluate as evaluate_lib
from sparsejax.pretrain import loop
from sparsejax.pretrain import plan as plan_lib
from sparsejax.pretrain import recipes
from sparsejax.rules import Rule

KERNELS = r"params/block_\d+/(attn/(query|key|value|out)|mlp/fc[12])/kernel"
METHODS = ("magnitude", "wanda", "sparsegpt")  # the base pruners
SETTINGS = {
    "50%": {"magnitude": Unstructured(0.5),
            "wanda": Unstructured(0.5, per_output=True),
            "sparsegpt": Unstructured(0.5)},
    "2:4": dict.fromkeys(METHODS, NM(2, 4)),
    "4:8": dict.fromkeys(METHODS, NM(4, 8)),
}
NAMES = {"magnitude": "magnitude", "wanda": "Wanda", "sparsegpt": "SparseGPT"}
DENSE_CONFIG = recipes.recipe_path("dense")


def _matching_config(workdir):
  """The dense variant, or the embedded default whose dense arm equals it.

  Args:
    workdir: The run's folder.

  Returns:
    The config to train or restore ``workdir`` with.

  Raises:
    ConfigError: ``workdir`` holds a run of another config.
  """
  dense = config_lib.load_config_file(DENSE_CONFIG)
  try:
    ckpt_lib.check_workdir(workdir, dense)
    return dense
  except config_lib.ConfigError:
    default = config_lib.get_config()
    try:
      ckpt_lib.check_workdir(workdir, default)
    except config_lib.ConfigError:
      raise config_lib.ConfigError(
          f"workdir {workdir} holds a run of neither the dense recipe"
          " nor the embedded default; use another --workdir.") from None
    return default


def dense_params(workdir):
  """Restores (training first if needed) the final dense params of a run.

  Args:
    workdir: A workdir of the ``dense`` recipe (or of the embedded
      default); a missing or unfinished run is trained to the end.

  Returns:
    ``(arm, params)``: the planned dense arm (model, config, splits) and
    its params after ``train.steps`` steps.
  """
  config = _matching_config(workdir)
  arm = plan_lib.plan(config)[0]
  assert arm.name == "dense", arm.name
  directory = os.path.join(workdir, "dense", "checkpoints")
  steps = config.train.steps
  if steps not in ckpt_lib.finished_steps(directory):
    if config.sparsity.method != "none":
      raise config_lib.ConfigError(
          f"workdir {workdir} holds an unfinished run of the embedded "
          "default; finish it with python -m sparsejax.pretrain or use "
          "another --workdir.")
    print(f"no finished dense run in {workdir}: training one", flush=True)
    start = time.perf_counter()
    loop.run(config, workdir)
    print(f"trained in {time.perf_counter() - start:.0f} s", flush=True)
  ckpt = ckpt_lib.Checkpointer(directory, async_save=False)
  with arm.context():
    state, _ = ckpt.restore(steps, arm.abstract_state)
  ckpt.close()
  return arm, jax.device_get(state.params)


def calibration_batches(train, windows, batch_size, seed):
  """``windows`` random windows of the training split, in batches."""
  inputs = pipeline.train_dataset(train, batch_size=windows, seed=seed,
                                  process_index=0, process_count=1)[0]["inputs"]
  return [inputs[i:i + batch_size] for i in range(0, len(inputs), batch_size)]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="workdir-oneshot-gpt")
  parser.add_argument("--windows", type=int, default=128)
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--seed", type=int, default=1)
  args = parser.parse_args()

  workdir = os.path.abspath(args.workdir)
  arm, params = dense_params(workdir)
  model, config = arm.model, arm.config
  seq_len = config.data.seq_len
  batches = calibration_batches(arm.corpus.train, args.windows,
                                args.batch_size, args.seed)

  def evaluate(p):
    return evaluate_lib.evaluate(model, p, arm.corpus.val_tokens,
                                 seq_len=seq_len,
                                 batch_size=config.eval.batch_size)

  dense = evaluate(params)
  print(f"device: {jax.devices()[0].device_kind}; workdir {workdir}")
  print(f"model: d_model {config.model.d_model}, {config.model.n_layers} "
        f"layers, d_ff {config.model.d_ff}; calibration: "
        f"{sum(b.size for b in batches)} tokens ({args.windows} windows of "
        f"{seq_len}) in {len(batches)} batches, sequential; evaluation: "
        f"{dense['tokens']} held-out tokens")
  print(f"dense: val loss {dense['loss']:.4f}, perplexity "
        f"{dense['perplexity']:.3f}", flush=True)

  rows = []
  for label, per_method in SETTINGS.items():
    for method in METHODS:
      start = time.perf_counter()
      new, masks = prune(model, {"params": params}, batches,
                         [Rule(KERNELS, per_method[method])], method=method,
                         sequential=True)
      new = jax.block_until_ready(new)
      seconds = time.perf_counter() - start
      kept = [np.asarray(m) for path, m in
              jax.tree_util.tree_flatten_with_path(masks)[0]
              if "block_" in jax.tree_util.keystr(path)
              and jax.tree_util.keystr(path).endswith("['kernel']")]
      sparsity = 1.0 - sum(m.sum() for m in kept) / sum(m.size for m in kept)
      result = evaluate(new["params"])
      rows.append((label, method, result, seconds, sparsity, len(kept)))
      print(f"{label:4s} {method:10s} val loss {result['loss']:.4f} "
            f"perplexity {result['perplexity']:.3f} (sparsity "
            f"{sparsity:.3f} over {len(kept)} kernels) [{seconds:.1f} s]",
            flush=True)

  print("\n| pattern | method | val loss (nats/byte) | perplexity | "
        "Δ loss vs dense | prune (s) |")
  print("|---|---|---|---|---|---|")
  print(f"| dense | - | {dense['loss']:.4f} | {dense['perplexity']:.3f} | "
        "- | - |")
  for label, method, result, seconds, _, _ in rows:
    print(f"| {label} | {NAMES[method]} | {result['loss']:.4f} | "
          f"{result['perplexity']:.3f} | "
          f"{result['loss'] - dense['loss']:+.4f} | {seconds:.1f} |")


if __name__ == "__main__":
  main()
