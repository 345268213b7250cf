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
# # Scaling out: sparse training on a device mesh, with orbax checkpoints
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/sparsejax/sparsejax/blob/main/colab/06_scaling_out.ipynb)
#
# The training step of the earlier notebooks, unchanged, on a 2x4 device mesh
# (`data` x `model`): data parallelism over 2 devices, tensor parallelism over
# 4. On a CPU runtime we fake 8 devices, which is enough to see every sharding
# decision and to compile the same programs a TPU pod slice would run. Run
# time on a 2-core CPU runtime: 102 s measured with other work sharing the two
# cores (less on an idle one).
#
# It shows:
#
# 1. a tiny GPT whose params are sharded by their logical axis names;
# 2. optimizer and sparsity state (masks included) sharded **like the params**
#    with `sparsejax.sharding.like_params`;
# 3. that the N:M mask refresh compiles to **no collectives** (every device
#    ranks its own shard), and a pattern that does need them;
# 4. saving params + optimizer state with orbax, restoring onto the mesh, and
#    continuing: the result equals an uninterrupted run **bit for bit**.

# %% [markdown]
# ## Eight CPU devices, before JAX starts
#
# XLA decides how many host (CPU) devices exist when the JAX backend starts,
# from the `XLA_FLAGS` environment variable. The flag must therefore be set
# **before `import jax`** (more precisely, before the first JAX computation);
# setting it later has no effect. On Colab, if JAX was already used in this
# runtime, restart the runtime and run this cell first. We also pin JAX to
# the CPU platform so that a GPU/TPU runtime still gets the 8 fake devices.

# %%
import os

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
os.environ["JAX_PLATFORMS"] = "cpu"

# Install sparsejax only when it is missing (e.g. on a fresh Colab runtime).
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("sparsejax") is None:
  subprocess.check_call([
      sys.executable, "-m", "pip", "install", "-q",
      "sparsejax @ git+https://github.com/sparsejax/sparsejax"])

# %%
import re
import tempfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import sparsejax as sj
from sparsejax.pretrain import corpus as corpus_lib
from sparsejax.pretrain import data
from sparsejax.pretrain import pipeline
from sparsejax import sharding as sj_sharding
from sparsejax.models import gpt

print("jax", jax.__version__, "| sparsejax", sj.__version__)
print(jax.device_count(), "devices:", jax.devices())

# %% [markdown]
# ## The mesh and the model
#
# A 2x4 mesh with axes `("data", "model")`. The GPT in `sparsejax.models.gpt`
# annotates every parameter with logical axis names (`embed`, `heads`, `mlp`,
# `vocab`, ...); `gpt.default_logical_rules("data", "model")` maps the batch to
# `data` and heads / MLP hidden / vocabulary to `model` (Megatron-style tensor
# parallelism). `nn.logical_to_mesh_sharding` turns that into one
# `NamedSharding` per parameter.

# %%
mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))
config = gpt.GPTConfig(d_model=64, n_layers=2, n_heads=4, d_ff=256,
                       max_len=32)
model = gpt.GPT(config)
logical_rules = gpt.default_logical_rules("data", "model")
param_shardings = nn.logical_to_mesh_sharding(
    gpt.logical_partition_specs(model), mesh, logical_rules)
params = jax.device_put(gpt.init_params(model, jax.random.key(0)),
                        param_shardings)

for path, w in sj.rules.named_leaves(params):
  if path.startswith("block_0") or "block" not in path:
    print(f"{path:28s} {str(w.shape):12s} {w.sharding.spec}")

# %% [markdown]
# ## Sparsifier, optimizer and their shardings
#
# 2:4 on the attention projections, 1:8 on the MLP, with progressive gradient
# flow (a short dense phase, then linear mask decay). The masks and the
# sparsifier's step live in the optimizer state (`sj.wrap`), so one call gives
# the whole optimizer state the shardings of the params it belongs to:
# `like_params` matches every state leaf to its param by path and shape (Adam's
# moments, the masks, the flip counters), and replicates the rest (step
# counts, scalars, the 0-d markers of dense leaves). `like_params` works on
# shapes alone, so the state is created directly with its shardings by a
# jitted `tx.init`.

# %%
TOTAL_STEPS, BATCH, SEQ = 12, 8, 32
rules = [sj.Rule(r".*attn.*kernel", sj.NM(2, 4)),
         sj.Rule(r".*mlp.*kernel", sj.NM(1, 8))]
sparsifier = sj.progressive_nm(rules, total_steps=TOTAL_STEPS, dense_steps=2,
                               decay="linear", c=0.2)
tx = sj.wrap(optax.adamw(3e-3), sparsifier)
state_shardings = sj_sharding.like_params(
    jax.eval_shape(tx.init, params), params, param_shardings, mesh)
init_opt_state = jax.jit(tx.init, out_shardings=state_shardings)
opt_state = init_opt_state(params)   # computed in place, already sharded
batch_sharding = NamedSharding(mesh, P("data"))

masks = sj.sparsity_state(opt_state).masks
mask = masks["block_0"]["mlp"]["fc1"]["kernel"]
kernel = params["block_0"]["mlp"]["fc1"]["kernel"]
mu = opt_state.inner[0].mu["block_0"]["mlp"]["fc1"]["kernel"]
print("fc1 kernel:", kernel.shape, kernel.sharding.spec)
print("fc1 mask  :", mask.shape, mask.dtype, mask.sharding.spec)
print("adam mu   :", mu.shape, mu.sharding.spec)
print("sparsity step:", sj.sparsity_state(opt_state).step.sharding.spec,
      "| bias mask (dense marker):",
      masks["block_0"]["mlp"]["fc1"]["bias"].sharding.spec)

# %% [markdown]
# The mask of `block_0/mlp/fc1/kernel` is split over the 4 `model` devices
# along its output axis and replicated over `data`: each device holds the
# 64x64 slice that matches its slice of the kernel.

# %%
try:
  jax.debug.visualize_array_sharding(mask)
except Exception as err:  # needs the `rich` package
  print("visualize_array_sharding unavailable:", err)
for shard in mask.addressable_shards[:4]:
  print(shard.device, shard.index, shard.data.shape)

# %% [markdown]
# ## The N:M mask refresh needs no communication
#
# N:M groups run along the input axis (axis 0), which is not sharded here, and
# every group lies inside one device's shard: each device ranks its own
# entries. We compile the refresh alone, with the params' shardings in and the
# masks' shardings out, and search the optimized HLO for collectives. For
# contrast, an unstructured per-tensor top-k (a global order over the whole
# tensor) must communicate.

# %%
COLLECTIVES = re.compile(r"\b(all-gather|all-reduce|all-to-all|"
                         r"collective-permute|reduce-scatter)(-start)?\(")


def refresh_hlo(sp):
  mask_shardings = sj_sharding.like_params(
      jax.eval_shape(sp.init, params).masks, params, param_shardings, mesh)
  def masks_after(p, t):  # the masks the method's update computes at step t
    state = sp.init(p)._replace(step=jnp.asarray(t, jnp.int32) - 1)
    return sp.update(p, jax.tree.map(jnp.zeros_like, p), state)[1].masks

  refresh = jax.jit(masks_after,
                    in_shardings=(param_shardings, None),
                    out_shardings=mask_shardings)
  return refresh.lower(params, jnp.int32(5)).compile().as_text()


nm_hlo = refresh_hlo(sparsifier)
print("N:M refresh, collectives:", len(COLLECTIVES.findall(nm_hlo)))
assert not COLLECTIVES.search(nm_hlo)

topk = sj.ste([sj.Rule(r".*mlp.*kernel", sj.Unstructured(0.875))])
topk_hlo = refresh_hlo(topk)
found = sorted({m.group(1) for m in COLLECTIVES.finditer(topk_hlo)})
print("unstructured top-k refresh, collectives:",
      len(COLLECTIVES.findall(topk_hlo)), found)

# %% [markdown]
# ## The training step on the mesh
#
# The same step as on one device: the loss sees
# `sparsifier.view(params, sj.sparsity_state(opt_state))`. Only the `jit`
# call changes: it names the shardings of its inputs and outputs, so params,
# optimizer state and masks never move. Batches come from the grain pipeline
# `sparsejax.pretrain.pipeline` (byte-level text of Python's built-in help,
# shipped with Python: nothing is downloaded): windows shuffled anew each
# epoch, batched by grain; the iterator's state, `{"next_index": step}`, goes
# into the checkpoint.

# %%
tokens = data.encode(data.pydoc_corpus())
dataset = pipeline.train_dataset(corpus_lib.TokenWindows(tokens, SEQ),
                                 batch_size=BATCH, seed=0)


def loss_fn(p, batch):
  logits = model.apply({"params": p}, batch["inputs"])
  return gpt.cross_entropy(logits, batch["targets"])


def train_step(params, opt_state, batch):
  state = sj.sparsity_state(opt_state)
  loss, grads = jax.value_and_grad(
      lambda p: loss_fn(sparsifier.view(p, state), batch))(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss


step_fn = jax.jit(train_step,
                  in_shardings=(param_shardings, state_shardings,
                                batch_sharding),
                  out_shardings=(param_shardings, state_shardings, None),
                  donate_argnums=(0, 1))


def train(params, opt_state, batches, steps):
  for _ in range(steps):
    batch = next(batches)
    batch = jax.device_put(batch, batch_sharding)
    params, opt_state, loss = step_fn(params, opt_state, batch)
    print(f"  step {int(sj.sparsity_state(opt_state).step):2d}  "
          f"loss {float(loss):.4f}")
  return params, opt_state, batches


def fresh_state():
  p = jax.device_put(gpt.init_params(model, jax.random.key(0)),
                     param_shardings)
  return p, init_opt_state(p), pipeline.train_iterator(dataset)


print("uninterrupted run:")
ref_params, ref_opt_state, _ = train(*fresh_state(), TOTAL_STEPS)

# %% [markdown]
# The full step does communicate, as it should: gradients are summed over the
# `data` axis, and the tensor-parallel matmuls exchange activations.

# %%
p0, s0, _ = fresh_state()
batch0 = dataset[0]
step_hlo = step_fn.lower(p0, s0, jax.device_put(batch0, batch_sharding)
                         ).compile().as_text()
kinds = {}
for m in COLLECTIVES.finditer(step_hlo):
  kinds[m.group(1)] = kinds.get(m.group(1), 0) + 1
print("collectives in the whole training step:", kinds)

# %% [markdown]
# ## Checkpoint, restore onto the mesh, continue
#
# Now the interrupted run: 6 steps, save params + optimizer state (which
# holds the masks and the sparsifier's step) + the data iterator's state with orbax,
# drop everything, restore, and run the remaining 6 steps.
#
# Restoring takes a *target*: a pytree of `jax.ShapeDtypeStruct` carrying the
# shardings we want. Orbax reads each array straight into its shards on the
# mesh (the target's sharding decides, whatever mesh wrote the checkpoint).

# %%
HALF = TOTAL_STEPS // 2
print("first half:")
params, opt_state, batches = train(*fresh_state(), HALF)

ckpt_dir = os.path.join(tempfile.mkdtemp(), "step_6")
checkpointer = ocp.StandardCheckpointer()
checkpointer.save(ckpt_dir, {
    "params": params,
    "opt_state": opt_state,
    "data_state": {k: np.asarray(v, np.int64)
                   for k, v in batches.get_state().items()},
})
checkpointer.wait_until_finished()
print("saved:", sorted(os.listdir(ckpt_dir)))

# Forget the in-memory state, as after a preemption.
abstract_params = jax.eval_shape(lambda: params)
abstract_opt_state = jax.eval_shape(lambda: opt_state)
del params, opt_state, batches

# %%
def with_shardings(abstract, shardings):
  return jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      abstract, shardings)


target = {
    "params": with_shardings(abstract_params, param_shardings),
    "opt_state": with_shardings(abstract_opt_state, state_shardings),
    "data_state": {"next_index": np.zeros((), np.int64)},
}
restored = checkpointer.restore(ckpt_dir, target)
params, opt_state = restored["params"], restored["opt_state"]
data_state = {k: int(v) for k, v in restored["data_state"].items()}
batches = pipeline.train_iterator(dataset, data_state)
print("restored step:", int(sj.sparsity_state(opt_state).step),
      "| data iterator state:", data_state)
print("restored optimizer state has the same structure:",
      jax.tree.structure(opt_state) == jax.tree.structure(abstract_opt_state))
restored_mask = sj.sparsity_state(opt_state).masks["block_0"]["mlp"]["fc1"][
    "kernel"]
print("restored mask sharding:", restored_mask.sharding.spec)

print("second half:")
params, opt_state, batches = train(params, opt_state, batches,
                                   TOTAL_STEPS - HALF)

# %% [markdown]
# ## Bit for bit
#
# Every leaf of the params and of the optimizer state (Adam moments, masks,
# flip counters, steps) of the resumed run equals the uninterrupted run's
# exactly, not just approximately.

# %%
def identical(a, b):
  return all(np.array_equal(np.asarray(x), np.asarray(y))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


same_params = identical(params, ref_params)
same_state = identical(opt_state, ref_opt_state)
print("params identical:", same_params)
print("optimizer + sparsity state identical:", same_state)
assert same_params and same_state

final = sparsifier.sparse_params(params, sj.sparsity_state(opt_state))
w = np.asarray(final["block_0"]["mlp"]["fc1"]["kernel"])
print("fc1 kernel: non-zeros per group of 8 inputs:",
      np.unique((w != 0).reshape(8, 8, -1).sum(axis=1)))
checkpointer.close()
