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
# # N:M training at high sparsity (1:8): STE, SR-STE and progressive gradient flow
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/sparsejax/sparsejax/blob/main/colab/02_nm_training_high_sparsity.ipynb)
#
# At 1:8 (87.5% sparsity) the choice of training method matters more than at
# 2:4. This notebook trains the same small MLP with every straight-through
# N:M method in sparsejax and compares them on held-out data:
#
# | method | forward view | backward |
# |---|---|---|
# | **STE** | `W * m`, m = N:M of abs(W) recomputed every step | identity |
# | **SR-STE** | same | `g + λ (1 - m) W` |
# | **MDGF** (mask decay) | `W * (m + (1 - m) β_t)`, β decays linear / exponential | identity (reference) or autodiff |
# | **SDGF** (structure decay) | hard mask, pattern tightens frame by frame (7:8 → 4:8 → 2:8 → 1:8, or 8:64 → 4:32 → 2:16 → 1:8) | identity |
#
# The progressive methods run a **dense** phase, then the **sparse** phase,
# then a **fine-tune** phase with the hard 1:8 mask. Every model is evaluated
# with the hard mask (`sparsifier.sparse_params`): exactly one non-zero weight
# in every group of 8 inputs.
#
# Run time on a 2-core CPU runtime: 156 s measured with other work sharing
# the two cores (less on an idle one). A 64-128-128-8 MLP,
# 300 steps per method, on a synthetic regression task (a random two-layer
# teacher network, `sparsejax.pretrain.data.synthetic_regression`). It is a toy: the
# point is how to set the methods up, log them and read them, not a benchmark.

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
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx

import sparsejax as sj
from sparsejax.pretrain import data
from sparsejax.models.mlp import MLP

print("jax", jax.__version__, "| sparsejax", sj.__version__, "|",
      jax.devices()[0].platform)

# %% [markdown]
# ## Data, model and the rule
#
# The NNX `MLP` keeps its hidden layers under `hidden/<i>/kernel` and the
# output layer under `head/kernel`. The rule sparsifies the hidden layers at
# 1:8 along the input axis and keeps the small head dense. `nnx.split` gives a
# plain params pytree; the forward pass merges whatever params we hand it, so
# the sparse view needs no change to the model.

# %%
x, y = data.synthetic_regression(6144, in_features=64, out_features=8,
                                 hidden=64, noise=0.01, seed=0)
x_train, y_train = jnp.asarray(x[:4096]), jnp.asarray(y[:4096])
x_test, y_test = jnp.asarray(x[4096:]), jnp.asarray(y[4096:])

TOTAL, BATCH, LR = 300, 128, 3e-3
DENSE, FINETUNE = 30, 60          # phases of the progressive methods
TARGET = (1, 8)
rng = np.random.default_rng(0)
batches = jnp.asarray(np.concatenate(
    [rng.permutation(4096) for _ in range(TOTAL * BATCH // 4096 + 1)]
)[:TOTAL * BATCH].reshape(TOTAL, BATCH))

graphdef, init_params = nnx.split(MLP(64, (128, 128), 8, rngs=nnx.Rngs(0)))
rules = [sj.Rule(r"hidden/.*/kernel", sj.NM(*TARGET))]
_ = sj.summarize(init_params, sj.compute_masks(init_params, rules), rules)


def predict(params, inputs):
  return nnx.merge(graphdef, params)(inputs)


def mse(params, inputs, targets):
  return jnp.mean((predict(params, inputs) - targets) ** 2)


@jax.jit
def _test_error(params):
  return mse(params, x_test, y_test) / jnp.var(y_test)


# Normalised test error: MSE / Var(y); 1.0 is "predict the mean".
def test_error(params):
  return float(_test_error(params))

# %% [markdown]
# ## The methods
#
# A named MDGF decay without `c` takes its rate from the length of the sparse
# phase, so that β falls from 1 to `end_beta = 0.01` just as the hard-mask
# fine-tune starts (`sj.schedules.decay_rate`): here exponential
# `c = ln(100)/210 ≈ 0.022`, linear `c = 0.99/210`. The published rates
# (`c = 1e-4` exponential, `8e-4` linear) were tuned for runs of ~100k steps;
# passed here they would leave β ≈ 0.98 when the fine-tune starts, a cliff the
# library warns about (`ScheduleWarning`).
#
# SR-STE's published λ = 2e-4 was tuned for SGD; with Adam the added term is
# renormalised per entry, so we also run a retuned λ = 2e-2.

# %%
progressive = dict(total_steps=TOTAL, dense_steps=DENSE,
                   finetune_steps=FINETUNE)
methods = {
    "STE": sj.ste(rules),
    "SR-STE λ=2e-4": sj.srste(rules, decay=2e-4),
    "SR-STE λ=2e-2": sj.srste(rules, decay=2e-2),
    "MDGF exp, identity": sj.progressive_nm(
        rules, decay="exponential", grad="identity", **progressive),
    "MDGF exp, autodiff": sj.progressive_nm(
        rules, decay="exponential", grad="autodiff", **progressive),
    "MDGF linear, autodiff": sj.progressive_nm(
        rules, decay="linear", grad="autodiff", **progressive),
    "SDGF stepwise": sj.progressive_nm(
        rules, structure="stepwise", decay=None, **progressive),
    "SDGF geometric": sj.progressive_nm(
        rules, structure="geometric", decay=None, **progressive),
}

# %% [markdown]
# ## The schedules
#
# `Progressive.table(steps, target=(1, 8))` evaluates a sparsifier's schedule on
# the host: phase, SDGF frame, the active `n:m`, and the MDGF β. Dashed lines
# mark the dense → sparse → fine-tune boundaries. Stepwise SDGF lowers the
# density (7:8 → 1:8); geometric SDGF keeps the density at 1/8 and shrinks
# the group (8:64 → 1:8), which is a tighter constraint at each frame. (In
# the dense phase the table reports the first frame; the forward pass is
# dense there.)

# %%
steps = np.arange(TOTAL)
fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 3.2))
for name in ("MDGF exp, autodiff", "MDGF linear, autodiff"):
  a1.plot(steps, methods[name].table(steps, target=TARGET).beta, label=name)
for name, ax in (("SDGF stepwise", a2), ("SDGF geometric", a3)):
  tab = methods[name].table(steps, target=TARGET)
  ax.step(steps, tab.n / tab.m, where="post", label="density n/m")
  ax.step(steps, 1 / tab.m, where="post", label="1/m (finer groups)")
  frames = list(dict.fromkeys(zip(tab.n.tolist(), tab.m.tolist())))
  ax.set_title(f"{name}: " + " → ".join(f"{n}:{m}" for n, m in frames))
  ax.set(xlabel="step", yscale="log")
  print(name, "frames in order:", [f"{n}:{m}" for n, m in frames])
a1.set(title="MDGF: β of the pruned weights", xlabel="step", ylabel="β")
for ax in (a1, a2, a3):
  for b in (DENSE, TOTAL - FINETUNE):
    ax.axvline(b, color="gray", ls="--", lw=0.8)
  ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

tab = methods["MDGF exp, autodiff"].table([0, DENSE, 100, 200, TOTAL - 1],
                                          target=TARGET)
print("step:", [0, DENSE, 100, 200, TOTAL - 1])
print("phase:", tab.phase.tolist(), " beta:",
      [round(float(b), 3) for b in tab.beta])

# %% [markdown]
# ## One training function for every method
#
# The two-line optax integration: `sj.wrap(optax.adamw(...), sparsifier)` puts
# the masks and step into the optimizer state, and the loss sees
# `sparsifier.view(params, sj.sparsity_state(opt_state))`. The whole run is one
# `lax.scan` under `jit`; each step also logs the flip rate
# (`sparsifier.diagnostics(state)["flip_rate"]`: the fraction of mask entries
# that changed at this step's refresh).

# %%
def train(sparsifier):
  """300 AdamW steps; returns final params, state and per-step logs."""
  tx = optax.adamw(LR)
  if sparsifier is not None:
    tx = sj.wrap(tx, sparsifier)

  def step(carry, idx):
    params, opt_state = carry
    xb, yb = x_train[idx], y_train[idx]
    if sparsifier is None:
      loss, grads = jax.value_and_grad(mse)(params, xb, yb)
    else:
      state = sj.sparsity_state(opt_state)
      loss, grads = jax.value_and_grad(
          lambda p: mse(sparsifier.view(p, state), xb, yb))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    flip = (jnp.float32(0) if sparsifier is None else
            sparsifier.diagnostics(sj.sparsity_state(opt_state))["flip_rate"])
    return (params, opt_state), (loss, flip)

  run = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), batches))
  (params, opt_state), (losses, flips) = run(init_params)
  state = None if sparsifier is None else sj.sparsity_state(opt_state)
  return params, state, np.asarray(losses), np.asarray(flips)


def holds_nm(params, n, m):
  """Every hidden kernel has at most n non-zeros per group of m inputs."""
  ok = True
  for path, w in sj.rules.named_leaves(params):
    if path.startswith("hidden") and path.endswith("kernel"):
      nz = np.asarray(w != 0).reshape(w.shape[0] // m, m, -1).sum(axis=1)
      ok &= bool((nz <= n).all())
  return ok

# %% [markdown]
# ## Train
#
# A dense baseline first; "dense + one-shot 1:8" prunes the trained dense
# model by magnitude with no further training (the floor every sparse-training
# method should beat).

# %%
results, logs = {}, {}
t0 = time.time()
dense_params, _, losses, flips = train(None)
logs["dense"] = (losses, flips)
results["dense (no sparsity)"] = dict(
    test=test_error(dense_params), train=losses[-20:].mean(), flip=np.nan,
    flip_sparse=np.nan, nm=False)
pruned = jax.jit(lambda p: sj.apply_masks(p, sj.compute_masks(p, rules)))(
    dense_params)
results["dense + one-shot 1:8"] = dict(
    test=test_error(pruned), train=np.nan, flip=np.nan, flip_sparse=np.nan,
    nm=holds_nm(pruned, *TARGET))

for name, sparsifier in methods.items():
  params, state, losses, flips = train(sparsifier)
  hard = sparsifier.sparse_params(params, state)   # hard 1:8 mask, β = 0
  logs[name] = (losses, flips)
  results[name] = dict(
      test=test_error(hard), train=losses[-20:].mean(),
      flip=flips[-50:].mean(), flip_sparse=flips[DENSE:TOTAL - FINETUNE].mean(),
      nm=holds_nm(hard, *TARGET))
print(f"trained {len(methods) + 1} models in {time.time() - t0:.1f} s")

# %% [markdown]
# ## Results
#
# * **test error**: MSE / Var(y) on 2048 held-out examples, with the hard 1:8
#   mask (lower is better);
# * **train loss**: mean training MSE of the last 20 steps, as the forward pass
#   saw it;
# * **flip rate**: mean fraction of mask entries changing per step, during the
#   sparse phase (steps 30-239) and over the last 50 steps.

# %%
print(f"{'method':24s} {'test error':>10s} {'train loss':>10s} "
      f"{'flips sparse':>12s} {'flips last50':>12s} {'1:8 holds':>9s}")
for name, r in results.items():
  print(f"{name:24s} {r['test']:10.4f} {r['train']:10.4f} "
        f"{r['flip_sparse']:12.2e} {r['flip']:12.2e} {str(r['nm']):>9s}")

best = min((n for n in methods), key=lambda n: results[n]["test"])
print(f"\nbest sparse method here: {best} "
      f"(test error {results[best]['test']:.4f}, dense "
      f"{results['dense (no sparsity)']['test']:.4f}, one-shot "
      f"{results['dense + one-shot 1:8']['test']:.4f})")

# %%
def smooth(v, k=10):
  return np.convolve(v, np.ones(k) / k, mode="valid")


fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4))
for i, (name, (losses, flips)) in enumerate(logs.items()):
  a1.plot(smooth(losses), label=name, lw=1.2, color=f"C{i}")
  if name != "dense":
    a2.plot(smooth(flips), label=name, lw=1.2, color=f"C{i}")
a1.set(title="training loss (the forward view; 10-step mean)", xlabel="step",
       yscale="log")
a2.set(title="mask flip rate per step (10-step mean)", xlabel="step",
       yscale="log")
for ax in (a1, a2):
  for b in (DENSE, TOTAL - FINETUNE):
    ax.axvline(b, color="gray", ls="--", lw=0.8)
a1.legend(fontsize=7)
a2.legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Reading the numbers
#
# What this run printed with Python 3.11 and JAX 0.10.2 on CPU (test error
# with the hard 1:8 mask; flip rate averaged over the sparse phase):
#
# | method | test error | train loss | flip rate |
# |---|---|---|---|
# | dense (no sparsity) | 0.120 | 0.025 | – |
# | dense + one-shot 1:8 | 0.755 | – | – |
# | STE | 0.204 | 0.066 | 6.3e-3 |
# | SR-STE λ=2e-4 | 0.168 | 0.058 | 5.1e-3 |
# | SR-STE λ=2e-2 | **0.127** | 0.040 | 2.1e-4 |
# | MDGF exp, identity | 0.208 | 0.065 | 5.1e-3 |
# | MDGF exp, autodiff | 0.134 | 0.044 | 2.7e-3 |
# | MDGF linear, autodiff | 0.143 | 0.048 | 2.1e-3 |
# | SDGF stepwise | 0.187 | 0.066 | 7.8e-3 |
# | SDGF geometric | 0.188 | 0.063 | 5.1e-3 |
#
# With Python 3.12 and the newest JAX, individual arms have differed from
# these by up to 0.02 (STE and MDGF-exp identity most): read differences
# below that as noise.
#
# Reading it honestly:
#
# * Every sparse model holds exactly 1:8 and is far better than pruning the
#   trained dense model one-shot (0.75): training with the mask is what makes
#   87.5% sparsity usable. None matches the dense model (0.120); the best
#   comes close.
# * The best arm here is SR-STE with λ retuned for Adam (2e-2, a hundred times
#   the published value): its flip rate is 30x lower than STE's. With the
#   published λ = 2e-4, SR-STE is only a little better than plain STE.
# * MDGF with the reference (identity) backward is no better than STE here.
#   With the autodiff backward (the gradient of pruned weights scaled by β)
#   the flip rate halves and the error drops to 0.134–0.143, second and third
#   best. This agrees with the small-scale evidence recorded with the library
#   (autodiff MDGF best at 1:32 over 10k steps, identity MDGF no better than
#   SR-STE).
# * Both SDGF variants land with STE. Stepwise SDGF reaches 1:8 only in its
#   last frame; geometric SDGF keeps density 1/8 but enforces the fine 1:8
#   groups only in its last frame too. With a 210-step sparse phase that
#   leaves ~50 steps plus the fine-tune phase at the final pattern.
#
# One seed, one toy task, 300 steps: read differences below ~0.02 as noise.
# The published claims (progressive methods ahead of SR-STE by up to ~2%
# top-1 on vision and ~5% on language at ≥ 1:8) concern long runs of large
# models; the pretraining script is the place to test them.
