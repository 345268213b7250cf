"""Training-step cost of every sparsity method relative to the dense step.

Run: `python -m benchmarks.train_step [--d-model 256 --layers 4 --batch 16
--seq 128 --reps 20]`. One jitted AdamW step of the GPT in
`sparsejax.models.gpt` (forward, backward, optimizer, mask refresh) per
method; dense and sparse steps are interleaved in the same process after a
warm-up; the median of `reps` is reported with the ratio sparse / dense.
Compile time is excluded. Also prints the memory of the masks as bool
arrays and bit-packed.
"""

import argparse
import statistics
import time

import jax
import optax

import sparsejax as sj
from sparsejax.models import gpt as gpt_lib

NM_RULES = [sj.Rule(r".*(attn|mlp).*kernel", sj.NM(2, 4))]
HIGH_RULES = [sj.Rule(r".*(attn|mlp).*kernel", sj.NM(1, 8))]
UNSTRUCTURED = [sj.Rule(r".*(attn|mlp).*kernel", sj.Unstructured(0.9))]


def methods(total_steps):
  """The methods compared (label -> method), built from the registry."""
  make = sj.methods.get
  return {
      "ste 2:4": make("ste")(NM_RULES),
      "srste 2:4": make("srste")(NM_RULES),
      "sste 2:4": make("sste")(NM_RULES),
      "mdgf 1:8": make("progressive_nm")(
          HIGH_RULES, total_steps=total_steps, decay="exponential"),
      "sdgf+mdgf 1:8 stepwise": make("progressive_nm")(
          HIGH_RULES, total_steps=total_steps, structure="stepwise",
          decay="exponential"),
      "gradual magnitude 90%": make("gradual_magnitude")(
          UNSTRUCTURED, end_step=total_steps, frequency=100),
      "static random 90%": make("static_random")(UNSTRUCTURED),
      "set 90%": make("set_sparse")(UNSTRUCTURED, distribution=None,
                                    t_end=total_steps),
      "rigl 90%": make("rigl")(UNSTRUCTURED, distribution=None,
                               t_end=total_steps),
  }


def make_step(model, sparsifier, tx):
  """A jitted train step; `sparsifier=None` is the dense baseline."""

  def loss_fn(params, tokens):
    logits = model.apply({"params": params}, tokens[:, :-1])
    return gpt_lib.cross_entropy(logits, tokens[:, 1:])

  @jax.jit
  def step(params, opt_state, tokens):
    if sparsifier is None:
      loss, grads = jax.value_and_grad(loss_fn)(params, tokens)
    else:
      state = sj.sparsity_state(opt_state)
      loss, grads = jax.value_and_grad(
          lambda p: loss_fn(sparsifier.view(p, state), tokens))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return step


def _time(step, carry, tokens):
  params, opt_state = carry
  start = time.perf_counter()
  params, opt_state, loss = step(params, opt_state, tokens)
  loss.block_until_ready()
  return time.perf_counter() - start, (params, opt_state)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--d-model", type=int, default=256)
  parser.add_argument("--layers", type=int, default=4)
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--seq", type=int, default=128)
  parser.add_argument("--reps", type=int, default=20)
  parser.add_argument("--only", default=None,
                      help="comma-separated method names")
  args = parser.parse_args()

  cfg = gpt_lib.GPTConfig(d_model=args.d_model, n_layers=args.layers,
                          n_heads=4, d_ff=4 * args.d_model,
                          max_len=args.seq)
  model = gpt_lib.GPT(cfg)
  params = gpt_lib.init_params(model, jax.random.key(0))
  tokens = jax.random.randint(jax.random.key(1), (args.batch, args.seq + 1),
                              0, cfg.vocab_size)
  n_params = sum(x.size for x in jax.tree.leaves(params))
  print(f"jax {jax.__version__} on {jax.devices()[0].platform} "
        f"({jax.device_count()} devices); GPT d={args.d_model} "
        f"L={args.layers}, {n_params / 1e6:.1f}M params, batch {args.batch} "
        f"x {args.seq}; median of {args.reps} interleaved steps")

  tx = optax.adamw(1e-3)
  dense_step = make_step(model, None, tx)
  dense_carry = (params, tx.init(params))
  dense_step(*dense_carry, tokens)[2].block_until_ready()
  chosen = methods(total_steps=10_000)
  if args.only:
    chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
  print(f"{'method':26s} {'compile s':>9s} {'dense ms':>9s} "
        f"{'sparse ms':>9s} {'ratio':>6s}")
  for name, sparsifier in chosen.items():
    wrapped = sj.wrap(tx, sparsifier)
    step = make_step(model, sparsifier, wrapped)
    carry = (params, wrapped.init(params))
    start = time.perf_counter()
    step(*carry, tokens)[2].block_until_ready()
    compile_s = time.perf_counter() - start
    dense_times, sparse_times = [], []
    for _ in range(args.reps):
      t, dense_carry = _time(dense_step, dense_carry, tokens)
      dense_times.append(t)
      t, carry = _time(step, carry, tokens)
      sparse_times.append(t)
    d, s = statistics.median(dense_times), statistics.median(sparse_times)
    print(f"{name:26s} {compile_s:9.1f} {d * 1e3:9.1f} {s * 1e3:9.1f} "
          f"{s / d:6.2f}", flush=True)

  masks = sj.compute_masks(params, NM_RULES)
  bool_bytes = sum(m.size for m in jax.tree.leaves(masks))
  packed_bytes = sum(m.size for m in jax.tree.leaves(sj.pack_masks(masks)))
  param_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
  print(f"masks: {bool_bytes / 2**20:.2f} MiB as bool, "
        f"{packed_bytes / 2**20:.2f} MiB packed; params "
        f"{param_bytes / 2**20:.2f} MiB (f32)")


if __name__ == "__main__":
  main()
