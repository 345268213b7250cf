"""Sparse training of a small GPT on a (data 2, model 4) mesh.

Run as one process with 8 devices or as 2 processes with 4 each (see
``sparsejax.pretrain.launch``); prints one JSON line: the losses, a fingerprint of every
mask, and the collectives found in the compiled mask refresh.

  python tests/multiprocess/train_worker.py ste rigl
"""

import hashlib
import json
import os
import re
import sys

from sparsejax.pretrain import cluster

cluster.join("JAX_NUM_PROCESSES" in os.environ, timeout_s=60)

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

import sparsejax as sj  # noqa: E402
from sparsejax import sharding as sharding_lib  # noqa: E402
from sparsejax.models import gpt as gpt_lib  # noqa: E402

COLLECTIVES = re.compile(
    r"\b(all-gather|all-reduce|all-to-all|collective-permute|reduce-scatter)"
    r"(-start)?\(")
CFG = gpt_lib.GPTConfig(d_model=64, n_layers=2, n_heads=4, d_ff=128,
                        max_len=16)
RULES = [sj.Rule(r".*attn.*kernel", sj.NM(2, 4)),
         sj.Rule(r".*mlp.*kernel", sj.Unstructured(0.75))]
STEPS = 6


def method(name):
  if name == "ste":
    return sj.ste(RULES)
  if name == "rigl":
    return sj.rigl([sj.Rule(r".*kernel", sj.Unstructured(0.75))],
                   sparsity=0.75, distribution="erk",
                   delta_t=2, t_end=STEPS)
  raise SystemExit(f"unknown method {name!r}")


def put(tree, shardings):
  """Global arrays from a host value every process holds in full."""
  return jax.tree.map(
      lambda x, s: jax.make_array_from_callback(
          np.shape(x), s, lambda idx, x=np.asarray(x): x[idx]),
      tree, shardings)


def describe(tree):
  """{leaf path: (sha256 prefix, count of True)} of a global boolean tree."""
  full = multihost_utils.process_allgather(tree, tiled=True)
  return {jax.tree_util.keystr(k): [
      hashlib.sha256(np.asarray(v).tobytes()).hexdigest()[:16],
      int(np.sum(v))] for k, v in jax.tree_util.tree_leaves_with_path(full)}


def main(name):
  devices = np.array(jax.devices()).reshape(2, 4)
  mesh = Mesh(devices, ("data", "model"))
  model = gpt_lib.GPT(CFG)
  host_params = jax.device_get(gpt_lib.init_params(model, jax.random.key(0)))
  sp = method(name)
  tx = sj.wrap(optax.adamw(1e-2), sp)
  logical = gpt_lib.default_logical_rules("data", "model")
  param_sh = nn.logical_to_mesh_sharding(
      gpt_lib.logical_partition_specs(model), mesh, logical)
  params = put(host_params, param_sh)
  state_shape = jax.eval_shape(tx.init, host_params)
  state_sh = sharding_lib.like_params(state_shape, host_params, param_sh,
                                      mesh)
  opt_state = jax.jit(tx.init, out_shardings=state_sh)(params)
  batch_sh = NamedSharding(mesh, P("data"))
  tokens = np.asarray(jax.random.randint(jax.random.key(1), (8, 17), 0, 256))
  batch = put(tokens, batch_sh)

  def loss_fn(p, b):
    logits = model.apply({"params": p}, b[:, :-1])
    return gpt_lib.cross_entropy(logits, b[:, 1:])

  def step(params, opt_state, b):
    state = sj.sparsity_state(opt_state)
    loss, grads = jax.value_and_grad(
        lambda p: loss_fn(sp.view(p, state), b))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  jitted = jax.jit(step, in_shardings=(param_sh, state_sh, batch_sh),
                   out_shardings=(param_sh, state_sh, None))
  losses = []
  for _ in range(STEPS):
    params, opt_state, loss = jitted(params, opt_state, batch)
    losses.append(float(loss))

  def refresh_collectives(sp):
    """Collectives in the compiled mask refresh of `sp` on this mesh."""
    masks_sh = sharding_lib.like_params(
        jax.eval_shape(sp.init, host_params).masks, host_params, param_sh,
        mesh)

    def refresh(p):
      state = sp.init(p)
      zeros = jax.tree.map(jnp.zeros_like, p)
      return sp.update(p, zeros, state, grads=zeros)[1].masks

    hlo = jax.jit(refresh, in_shardings=(param_sh,),
                  out_shardings=masks_sh).lower(params).compile().as_text()
    return sorted(set(m[0] for m in COLLECTIVES.findall(hlo)))

  masks = sj.sparsity_state(opt_state).masks
  print(json.dumps({
      "method": name, "process": jax.process_index(), "processes": jax.process_count(),
      "devices": jax.device_count(), "losses": losses,
      "masks": describe(masks),
      # N:M groups never cross a shard; a per-tensor threshold does.
      "nm_refresh_collectives": refresh_collectives(
          sj.ste([sj.Rule(r".*kernel", sj.NM(2, 4))])),
      "refresh_collectives": refresh_collectives(sp),
  }), flush=True)


if __name__ == "__main__":
  for name in sys.argv[1:]:  # One JSON line per method, in order.
    main(name)
