# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Kernels and serving: compressed formats, Pallas kernels, a sparse GPT
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/sparsejax/sparsejax/blob/main/colab/05_kernels_and_serving.ipynb)
#
# A mask says *which* weights are zero; to make a sparse model cheaper to
# serve, the zeros must not be stored or read. This notebook shows:
#
# 1. **N:M compressed format** (`pallas_kernels.formats.compress_nm`): values plus
#    bit-packed in-group indices, its bytes per weight, and the physical
#    bound on the speedup it allows;
# 2. **block-sparse formats**: BSR and the padded fixed-width variant;
# 3. the **Pallas kernels** `nm_matmul` and `block_sparse_matmul` against the
#    XLA fallback and the pure-jnp reference, and how the automatic choice is
#    made (`choose_implementation`, `batch_crossover`);
# 4. **exporting a GPT** with `sj.deploy.export` and serving it *unchanged* under
#    `sj.flax.serving()`;
# 5. an honest timing cell.
#
# Run time on a 2-core CPU runtime: 121 s measured with other work sharing
# the two cores (less on an idle one). On CPU the Pallas kernels run in
# **interpret mode** (correct, slow: for testing only); on a GPU or TPU runtime
# the same cells run the real kernels.

# %%
# Install sparsejax only when it is missing (e.g. on a fresh Colab runtime).
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("sparsejax") is None:
  subprocess.check_call([
      sys.executable, "-m", "pip", "install", "-q",
      "sparsejax @ git+https://github.com/sparsejax/sparsejax"])

# %%
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

import pallas_kernels
import sparsejax as sj
from pallas_kernels.block_sparse import block_sparse_matmul_reference
from pallas_kernels.block_sparse import choose_implementation as choose_block
from pallas_kernels.nm import batch_crossover
from pallas_kernels.nm import choose_implementation as choose_nm
from pallas_kernels.nm import nm_matmul_reference
from sparsejax.pretrain import data
from pallas_kernels import formats
from sparsejax.models import gpt

BACKEND = jax.default_backend()
ON_ACCELERATOR = BACKEND in ("gpu", "tpu")
print("jax", jax.__version__, "| sparsejax", sj.__version__, "| backend:",
      BACKEND, "(real Pallas kernels)" if ON_ACCELERATOR else
      "(Pallas kernels run in interpret mode)")

# %% [markdown]
# ## 1. The N:M compressed format
#
# A `(K, N)` Dense kernel (Flax stores `(in, out)`) that is 2:4 sparse along
# K, the contraction axis. `compress_nm` keeps the `n` values of every group
# of `m` and stores each one's position in the group with
# `ceil(log2 m)` bits, packed 32 to a `uint32` word (bit planes). The layout
# is tiled and slot-major so a kernel expands a tile with a few lane-aligned
# selects, no gathers.

# %%
K, N = 1024, 256
w = jax.random.normal(jax.random.key(0), (K, N), jnp.float32)
mask = sj.NM(2, 4).mask(jnp.abs(w))         # 2 of every 4 inputs, per column
c = formats.compress_nm(w, mask, 2, 4)

print("values :", c.values.shape, c.values.dtype)
print("indices:", c.indices.shape, c.indices.dtype,
      f"({c.bits} bits per kept value, {c.tile_groups} groups per tile)")
print(f"dense  f32 : {w.nbytes:>9,} B  = {w.nbytes / w.size:.3f} B/weight")
print(f"2:4    f32 : {c.nbytes():>9,} B  = {c.nbytes() / w.size:.3f} B/weight"
      f"  ({w.nbytes / c.nbytes():.2f}x smaller)")
wb = w.astype(jnp.bfloat16)
cb = formats.compress_nm(wb, mask, 2, 4)
print(f"dense  bf16: {wb.nbytes:>9,} B  = {wb.nbytes / w.size:.3f} B/weight")
print(f"2:4    bf16: {cb.nbytes():>9,} B  = {cb.nbytes() / w.size:.3f} B/weight"
      f"  ({wb.nbytes / cb.nbytes():.2f}x smaller)")

# Exact round trip: decompress(compress(w, mask)) == w * mask, bit for bit.
print("round trip exact:", bool((formats.decompress(c) == w * mask).all()),
      bool((formats.decompress(cb) == wb * mask).all()))

# %% [markdown]
# ### The physical bound
#
# A bandwidth-bound kernel (decode, small batch) reads the compressed weight
# instead of the dense one, so with bf16 weights its speedup is at most
# `16 / bpe`, where `bpe = 16·(n/m) + (n/m)·log2(m)` bits per dense weight.
# The table computes the bound from the formula, with bit-packed indices and
# with one byte per index, and checks it against the bytes `compress_nm`
# actually produces. The last columns are `batch_crossover`: the batch above
# which the weight no longer dominates the traffic and dense matmul wins
# (ridge points of an H100 and a TPU v5e).

# %%
print("| pattern | density | bpe (packed) | measured bpe | bound, packed "
      "| bound, byte index | B* H100 | B* TPU v5e |")
print("|---|---|---|---|---|---|---|---|")
for n, m in [(2, 4), (1, 4), (2, 8), (1, 8), (1, 16)]:
  bpe = 16 * n / m + n / m * math.log2(m)
  bpe_byte = 16 * n / m + n / m * 8
  mk = sj.NM(n, m).mask(jnp.abs(w))
  cc = formats.compress_nm(wb, mk, n, m)
  measured = 8 * cc.nbytes() / w.size
  print(f"| {n}:{m} | {n / m:.4f} | {bpe:.3f} | {measured:.3f} | "
        f"{16 / bpe:.2f}x | {16 / bpe_byte:.2f}x | "
        f"{batch_crossover(cc, 'gpu'):.0f} | {batch_crossover(cc, 'tpu'):.0f} |")

# %% [markdown]
# The measured bits per weight equal the formula (K = 1024 fills whole tiles),
# and the bounds are those of `KERNELS.md`: 1.78x for 2:4 up to 12.8x for
# 1:16 with packed indices, against 1.33x-10.7x with a byte per index. That is
# why the indices are bit-packed.
#
# ## 2. Block-sparse formats
#
# A `Block((32, 32), 0.75)` mask keeps the quarter of 32x32 blocks with the
# largest mean |w|. Its block grid goes to either format:
#
# * **BSR/BSC** (`compress_bsr`): kept blocks, their block indices and line
#   pointers; `major="col"` groups blocks by block column, which is what the
#   `x @ W` kernel walks.
# * **padded** (`compress_padded_block`): every line padded to the same number
#   of blocks (static grid for the kernels; padding repeats the last index, so
#   it costs no extra reads).

# %%
# The TPU kernel needs blocks that are multiples of 128 (its (8, 128) tiles).
BH = BW = 128 if BACKEND == "tpu" else 32
bmask = sj.Block((BH, BW), 0.75).mask(jnp.abs(w))
grid = np.asarray(bmask).reshape(K // BH, BH, N // BW, BW).any(axis=(1, 3))
bsr = formats.compress_bsr(w, grid, (BH, BW), major="col")
padded = formats.compress_padded_block(w, grid, (BH, BW), major="col")

print("block grid:", grid.shape, "kept blocks:", int(grid.sum()))
print("BSC   : values", bsr.values.shape, "indices", bsr.indices.shape,
      "indptr", bsr.indptr.shape)
print("padded: values", padded.values.shape, "blocks per column:",
      np.asarray(padded.counts).tolist())
print("round trip exact:", bool((formats.decompress(bsr) == w * bmask).all()),
      bool((formats.decompress(padded) == w * bmask).all()))
print(f"bytes: dense {w.nbytes:,}  BSC {bsr.values.nbytes:,} (+ "
      f"{bsr.indices.nbytes + bsr.indptr.nbytes} B of indices)  padded "
      f"{padded.values.nbytes:,}")

# %% [markdown]
# The padded variant stores `max(counts)` blocks per column, so it holds
# more than BSR when the columns are uneven; the kernels skip the padding.
#
# ## 3. The kernels: Pallas vs XLA vs reference
#
# `nm_matmul(x, c)` computes `x @ W` from the compressed weight.
# `implementation="pallas"` picks the kernel for the backend (Triton on GPU,
# Mosaic on TPU) and, on CPU, runs the TPU kernel in interpret mode;
# `"xla"` expands the weight and calls `jnp.dot`; the reference does the same
# at the highest precision. `choose_implementation` tells which one runs.

# %%
x = jax.random.normal(jax.random.key(1), (8, K), jnp.float32)
reference = nm_matmul_reference(x, c)
for impl in ("pallas", "xla"):
  choice = choose_nm(x, c, impl)
  y = pallas_kernels.nm_matmul(x, c, implementation=impl)
  err = float(jnp.abs(y - reference).max())
  print(f"nm_matmul {impl:6s} -> {choice.implementation:10s} "
        f"interpret={choice.interpret!s:5s}  max |y - ref| = {err:.2e}")

reference = block_sparse_matmul_reference(x, padded)
for impl in ("pallas", "xla"):
  choice = choose_block(padded, "dsd", impl)
  y = pallas_kernels.block_sparse_matmul(x, padded, implementation=impl)
  err = float(jnp.abs(y - reference).max())
  print(f"block_sparse_matmul {impl:6s} -> {choice.implementation:10s} "
        f"interpret={choice.interpret!s:5s}  max |y - ref| = {err:.2e}")

# %% [markdown]
# All agree to float32 rounding. The kernels are also differentiable in `x`
# and in the compressed values (a custom VJP), so a compressed layer can be
# fine-tuned.

# %%
g = jax.grad(lambda v: pallas_kernels.nm_matmul(
    x, formats.NMCompressed(v, c.indices, c.n, c.m, c.shape, c.tile_groups),
    implementation="pallas").sum())(c.values)
print("d(sum)/d(values):", g.shape, "finite:", bool(jnp.isfinite(g).all()))

# %% [markdown]
# ### Why the automatic choice picks what it picks
#
# With `implementation=None` the API decides from the backend, the layout and
# the batch. The kernels win by *bandwidth*, so past `batch_crossover` (the
# batch where the matmul becomes compute bound) dense XLA is faster; on TPU
# the index planes must tile by 256 groups. Asked for several platforms
# (nothing runs, only the decision):

# %%
for platform in ("cpu", "gpu", "tpu"):
  for batch in (1, 64, 512):
    xs = jax.ShapeDtypeStruct((batch, K), jnp.bfloat16)
    ch = choose_nm(xs, cb, platform=platform)
    print(f"2:4 {platform}  batch {batch:3d}: {ch.implementation:10s} "
          f"{ch.reason}")
print()
for platform in ("cpu", "gpu", "tpu"):
  ch = choose_block(padded, platform=platform)
  print(f"block {BH}x{BW} {platform}: {ch.implementation:10s} {ch.reason}")
big = formats.compress_padded_block(
    jnp.ones((512, 512)), np.eye(2, dtype=bool), (256, 256), major="col")
ch = choose_block(big, platform="tpu")
print(f"block 256x256 tpu: {ch.implementation:10s} {ch.reason}")
print(f"\nthis runtime ({BACKEND}), batch 8:", choose_nm(x, c).implementation)

# %% [markdown]
# ## 4. Export a GPT and serve it unchanged
#
# A small byte-level GPT from `sparsejax.models.gpt`: 2:4 on the attention
# projections, 1:4 on the first MLP kernel, 32x32 blocks at 75% on the
# second. The weights are random here (notebook 04 trains one); what matters
# is that the served model computes exactly what the masked dense model does.

# %%
config = gpt.GPTConfig(d_model=128, n_layers=2, n_heads=4, d_ff=512,
                       max_len=64)
model = gpt.GPT(config)
params = gpt.init_params(model, jax.random.key(0))
rules = [
    sj.Rule(r".*attn/(query|key|value|out)/kernel", sj.NM(2, 4)),
    sj.Rule(r".*mlp/fc1/kernel", sj.NM(1, 4)),
    sj.Rule(r".*mlp/fc2/kernel", sj.Block((32, 32), 0.75)),
]
masks = sj.compute_masks(params, rules)
sparse = sj.apply_masks(params, masks)
exported = sj.deploy.export(sparse, masks, rules)

for group in ("attn", "mlp"):
  for name, layer in exported["block_0"][group].items():
    print(f"block_0/{group}/{name}/kernel".ljust(26),
          type(layer["kernel"]).__name__)
print(f"params: dense {sj.deploy.storage_bytes(params):,} B, exported "
      f"{sj.deploy.storage_bytes(exported):,} B (embeddings, lm_head, "
      "norms and biases stay dense)")

# %% [markdown]
# `sj.flax.serving()` intercepts every Linen `nn.Dense` whose kernel is compressed
# and routes it to `nm_matmul` / `block_sparse_matmul`; the model code is not
# touched. Exported params are a pytree, so the served model jits.

# %%
tokens = jnp.asarray(data.encode("def sparse(x): return x * mask")[None],
                     jnp.int32)
masked_dense = model.apply({"params": sparse}, tokens)

with sj.flax.serving():                     # automatic choice (XLA on CPU)
  served = jax.jit(model.apply)({"params": exported}, tokens)
print("serving(), automatic:".ljust(23), "max |logits - masked dense| = "
      f"{float(jnp.abs(served - masked_dense).max()):.2e}")

# Force the Pallas kernels (interpret mode on CPU). This small model's layers
# do not meet the TPU kernels' tiling (256 N:M groups per tile, 128-multiple
# blocks), so on a TPU runtime we let the API choose per layer instead.
force = None if BACKEND == "tpu" else "pallas"
with sj.flax.serving(force):
  served_pallas = jax.jit(model.apply)({"params": exported}, tokens)
print(f"serving({force!r}):".ljust(23), "max |logits - masked dense| = "
      f"{float(jnp.abs(served_pallas - masked_dense).max()):.2e}")
tol = 1e-4 if BACKEND == "cpu" else 1e-2   # accelerators may use TF32 dots
np.testing.assert_allclose(served, masked_dense, atol=tol)
np.testing.assert_allclose(served_pallas, masked_dense, atol=tol)

# %% [markdown]
# On CPU both match the masked dense model to float32 rounding (about 1e-7
# here; the differences come only from a different summation order).
#
# ## 5. Timing, honestly
#
# A `1024 x 1024` 2:4 layer, dense `jnp.dot` against `nm_matmul` (automatic
# choice), both jitted, median of 10 calls after warm-up, at batch 1 (decode)
# and 256. On **CPU** the automatic choice is the XLA fallback, which expands
# the compressed weight on every call and then does a dense matmul, so it is
# *slower* than dense: there is no sparse speedup to be had on CPU. The
# speedups need an accelerator, in the memory-bound regime (small batch);
# measure them there with
#
# ```
# python -m pallas_kernels.bench --op nm     # or --op block, or all
# ```
#
# which sweeps LLM shapes and batches 1-512 and reports the ratio dense/sparse,
# the fraction of the bound above, GB/s and TFLOP/s.

# %%
def median_seconds(fn, *args, reps=10):
  jax.block_until_ready(fn(*args))                      # compile + warm-up
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return float(np.median(times))


dtype = jnp.bfloat16 if ON_ACCELERATOR else jnp.float32
w_sq = jax.random.normal(jax.random.key(2), (1024, 1024), dtype)
m_sq = sj.NM(2, 4).mask(jnp.abs(w_sq))
c_sq = formats.compress_nm(w_sq, m_sq, 2, 4)
dense_w = w_sq * m_sq
dense_fn = jax.jit(jnp.dot)
sparse_fn = jax.jit(pallas_kernels.nm_matmul)
print(f"{BACKEND}, {jnp.dtype(dtype).name}, 1024x1024 2:4")
for batch in (1, 256):
  xb = jax.random.normal(jax.random.key(3), (batch, 1024), dtype)
  t_dense = median_seconds(dense_fn, xb, dense_w)
  t_sparse = median_seconds(sparse_fn, xb, c_sq)
  impl = choose_nm(xb, c_sq).implementation
  print(f"batch {batch:3d}: dense {1e6 * t_dense:8.1f} us   nm_matmul "
        f"[{impl}] {1e6 * t_sparse:8.1f} us   dense/sparse "
        f"{t_dense / t_sparse:.2f}x")

# %% [markdown]
# On the CPU this notebook was written on, the XLA fallback was slower than
# dense at both batches, as expected (it does the dense matmul *plus* the
# expansion): dense/sparse between about 0.01x and 0.8x across runs,
# depending on the batch, the JAX version and how busy the machine was
# (about 0.1x at batch 1 and 0.7-0.8x at batch 256 with the newest JAX on a
# quiet machine). On CPU, sparsity buys
# memory (section 1), not speed. For speed, use a GPU or TPU runtime and
# the benchmark above; a bandwidth kernel is capped by the bound table of
# section 1 (1.78x for 2:4 with bf16 weights) and only at small batch.
#
# ## Next
#
# * `04_oneshot_pruning`: prune a trained GPT one-shot with magnitude, Wanda
#   and SparseGPT, then export it as here.
# * `02_nm_training_high_sparsity`: train with N:M sparsity from the start.
