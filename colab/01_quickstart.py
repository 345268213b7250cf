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
# # sparsejax quickstart: patterns, masks and the optax integration
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/sparsejax/sparsejax/blob/main/colab/01_quickstart.ipynb)
#
# Run time on a 2-core CPU runtime: 88 s measured with other work sharing
# the two cores (less on an idle one). It shows:
#
# 1. **rules and patterns**: which leaves of a Flax model's params get which
#    sparsity pattern (N:M, transposable 2:4, block, unstructured);
# 2. **masks**, a pytree that mirrors the params, drawn as pictures;
# 3. the **two-line optax integration** (`sj.wrap` + `sparsifier.view`) that
#    trains a model with N:M sparsity without editing the model;
# 4. `sj.summarize`, packed mask storage with `sj.pack_masks`, and the warning
#    you get when a rule matches nothing (the most common silent failure).

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
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import sparsejax as sj
from sparsejax.pretrain import data

print("jax", jax.__version__, "| sparsejax", sj.__version__, "|",
      jax.devices()[0].platform)

# %% [markdown]
# ## A small Flax model
#
# Any pytree of params works: Linen variables, NNX `State`, plain dicts. Here a
# Linen model with an "attention-like" projection, an MLP block and a head.
# Flax stores a Dense kernel as `(in, out)`; sparsejax groups N:M along the
# **input (contraction) axis**, axis 0, which is what sparse hardware
# compresses.

# %%
class Net(nn.Module):
  """Projection, MLP block and classification head."""

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(64, name="attn_proj")(x)
    h = nn.relu(nn.Dense(128, name="mlp_fc1")(x))
    x = x + nn.Dense(64, name="mlp_fc2")(h)
    return nn.Dense(4, name="head")(nn.relu(x))


x_all, y_all = data.synthetic_classification(
    2048, num_classes=4, shape=32, separation=3.0, seed=0)
model = Net()
params = model.init(jax.random.key(0), x_all[:1])["params"]
for path, leaf in sj.rules.named_leaves(params):
  print(f"{path:22s} {leaf.shape}")

# %% [markdown]
# ## Rules: which leaf gets which pattern
#
# A `Rule` is a regex matched with `re.fullmatch` against the `/`-joined leaf
# path; the first matching rule wins. By default rules skip 1-D leaves (biases,
# norm scales) and embeddings, so they stay dense.

# %%
rules = [
    sj.Rule(r"attn.*kernel", sj.NM(2, 4)),   # 2:4 (50%) on the projection
    sj.Rule(r"mlp.*kernel", sj.NM(1, 8)),    # 1:8 (87.5%) on the MLP
]                                            # head and biases stay dense
masks = sj.compute_masks(params, rules)
sparse = sj.apply_masks(params, masks)
summary = sj.summarize(params, masks, rules)

# %% [markdown]
# The mask tree mirrors the params, so `jax.tree.map` over both just works.
# Dense leaves hold a 0-d `True` that broadcasts. Each group of 8 consecutive
# *input* features of one output unit keeps exactly one weight:

# %%
fc1 = np.asarray(masks["mlp_fc1"]["kernel"])
print("mask of mlp_fc1/kernel:", fc1.shape, fc1.dtype)
print("kept per group of 8 (unique):",
      np.unique(fc1.reshape(64 // 8, 8, 128).sum(axis=1)))
print("bias mask:", masks["mlp_fc1"]["bias"])
print("masked sparsity over targeted leaves: "
      f"{summary.masked_sparsity:.1%}; over all params: {summary.sparsity:.1%}")

# %% [markdown]
# ## What the patterns look like
#
# The same kernel (`mlp_fc1/kernel`, top-left 32x32 corner) under five
# patterns. Rows are input features (axis 0), columns output units; yellow
# entries are kept.
#
# * **2:4** and **1:8**: every vertical run of 4 (or 8) entries keeps 2 (or 1).
# * **transposable 2:4**: 2:4 along rows *and* columns at once (each 4x4 tile
#   is the best of the 90 valid tiles), so the transpose used in the backward
#   pass is also 2:4.
# * **block 8x8 at 75%**: whole 8x8 blocks are kept or dropped (mean |w| per
#   block).
# * **unstructured 90%**: the top 10% of |w| anywhere in the tensor.

# %%
patterns = {
    "N:M 2:4": sj.NM(2, 4),
    "N:M 1:8": sj.NM(1, 8),
    "transposable 2:4": sj.NM(2, 4, transposable=True),
    "block 8x8, 75%": sj.Block((8, 8), 0.75),
    "unstructured 90%": sj.Unstructured(0.9),
}
fig, axes = plt.subplots(1, len(patterns), figsize=(16, 3.6))
for ax, (title, pattern) in zip(axes, patterns.items()):
  m = sj.compute_masks(params, sj.Rule(r"mlp_fc1/kernel", pattern))
  kernel_mask = np.asarray(m["mlp_fc1"]["kernel"])
  ax.imshow(kernel_mask[:32, :32], cmap="viridis", interpolation="nearest")
  ax.set_title(f"{title}\nkept {kernel_mask.mean():.1%}")
  ax.set_xlabel("output unit")
  ax.set_ylabel("input feature")
fig.tight_layout()
plt.show()

# %% [markdown]
# The counts are exact even when magnitudes tie (ties go to the lower index),
# and a transposable mask holds 2:4 along both axes:

# %%
t = np.asarray(sj.compute_masks(
    params, sj.Rule(r"mlp_fc1/kernel", sj.NM(2, 4, transposable=True))
)["mlp_fc1"]["kernel"])
print("kept per group of 4 along inputs :", np.unique(t.reshape(16, 4, 128).sum(1)))
print("kept per group of 4 along outputs:", np.unique(t.reshape(64, 32, 4).sum(2)))
ties = sj.NM(2, 4).mask(jnp.zeros((8, 3)))   # all scores equal
print("2:4 of an all-zero score:", np.asarray(ties).sum(axis=0), "kept per column")

# %% [markdown]
# ## Training with sparsity: two lines of optax
#
# A *sparsifier* holds the method (here SR-STE at 2:4 / 1:8: a hard N:M mask
# of |W| recomputed every step, straight-through gradient plus a small decay
# that pushes pruned weights towards zero). The two lines that matter:
#
# ```python
# tx = sj.wrap(optax.adamw(3e-3), sparsifier)                    # 1
# logits = model.apply({"params": sparsifier.view(params, sj.sparsity_state(opt_state))}, x)  # 2
# ```
#
# The masks and the step live inside the optimizer state, so they are
# checkpointed and sharded with it. The model code is untouched.

# %%
sparsifier = sj.srste(rules, decay=2e-4)
tx = sj.wrap(optax.adamw(3e-3), sparsifier)
opt_state = tx.init(params)

x_train, y_train = jnp.asarray(x_all[:1536]), jnp.asarray(y_all[:1536])
x_test, y_test = jnp.asarray(x_all[1536:]), jnp.asarray(y_all[1536:])


def loss_fn(p, x, y):
  logits = model.apply({"params": p}, x)
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def accuracy(p, x, y):
  return float(jnp.mean(jnp.argmax(model.apply({"params": p}, x), -1) == y))


@jax.jit
def train_step(params, opt_state, x, y):
  state = sj.sparsity_state(opt_state)
  loss, grads = jax.value_and_grad(
      lambda p: loss_fn(sparsifier.view(p, state), x, y))(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss


trained = params
losses, flip_rates = [], []
for step in range(200):
  idx = (np.arange(64) + 64 * step) % 1536          # minibatches of 64
  trained, opt_state, loss = train_step(trained, opt_state, x_train[idx],
                                        y_train[idx])
  losses.append(float(loss))
  flip_rates.append(float(sparsifier.diagnostics(
      sj.sparsity_state(opt_state))["flip_rate"]))

final_state = sj.sparsity_state(opt_state)
hard = sparsifier.sparse_params(trained, final_state)   # exactly N:M
print(f"step {int(final_state.step)}: train loss {losses[-1]:.3f}")
print(f"test accuracy, dense shadow weights: {accuracy(trained, x_test, y_test):.3f}")
print(f"test accuracy, hard N:M weights    : {accuracy(hard, x_test, y_test):.3f}")

fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3))
a1.plot(losses)
a1.set(title="training loss (SR-STE, 2:4 + 1:8)", xlabel="step")
a2.plot(flip_rates)
a2.set(title="mask flip rate per step", xlabel="step", yscale="log")
fig.tight_layout()
plt.show()

# %% [markdown]
# `sparsifier.sparse_params` is the exactly sparse model (the hard mask applied
# to the shadow weights) used for evaluation and export. `sj.summarize` checks
# what it holds:

# %%
nonzero = jax.tree.map(lambda w: w != 0, hard)
print("2:4 holds in attn_proj:",
      bool((np.asarray(nonzero["attn_proj"]["kernel"]).reshape(8, 4, 64).sum(1) <= 2).all()))
_ = sj.summarize(trained, final_state.masks, rules)

# %% [markdown]
# ## Packed mask storage
#
# A bool mask costs one byte per entry. `sj.pack_masks` stores 8 entries per
# byte, packed along the **last axis**, so a packed mask stays on its param's
# devices when the param is sharded (flat packing would need collectives).
# Dense leaves keep their 0-d marker.

# %%
packed = sj.pack_masks(final_state.masks)
bool_bytes = sum(m.nbytes for m in jax.tree.leaves(final_state.masks))
packed_bytes = sum(m.nbytes for m in jax.tree.leaves(packed))
print(f"bool masks: {bool_bytes:,} B   packed: {packed_bytes:,} B   "
      f"({bool_bytes / packed_bytes:.1f}x smaller)")
print("packed mlp_fc1/kernel:", packed["mlp_fc1"]["kernel"].bits.shape,
      packed["mlp_fc1"]["kernel"].bits.dtype)
roundtrip = sj.unpack_masks(packed)
print("unpack(pack(m)) == m:", all(jax.tree.leaves(jax.tree.map(
    lambda a, b: bool((a == b).all()), roundtrip, final_state.masks))))

# %% [markdown]
# ## A rule that matches nothing is reported
#
# A typo in a regex would otherwise leave a layer silently dense. sparsejax
# warns (or raises, with `on_unused="error"`) and shows what the leaf paths
# look like:

# %%
typo_rules = [sj.Rule(r"mpl.*kernel", sj.NM(1, 8))]   # "mpl" instead of "mlp"
with warnings.catch_warnings(record=True) as caught:
  warnings.simplefilter("always")
  sj.compute_masks(params, typo_rules)
for w in caught:
  print(f"{w.category.__name__}: {w.message}")

print("unused:", [r.path for r in sj.rules.unused_rules(params, typo_rules)])
try:
  sj.ste(typo_rules, on_unused="error").init(params)
except ValueError as err:
  print("on_unused='error' ->", err)

# %% [markdown]
# ## Next
#
# * `02_nm_training_high_sparsity`: 1:8 training with STE, SR-STE and
#   progressive gradient flow (mask decay, structure decay).
# * `03_dynamic_sparse_training`: RigL, SET, gradual magnitude pruning, ERK.
# * `06_scaling_out`: the same step on a device mesh, with orbax checkpoints.
