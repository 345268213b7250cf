"""A one-minute tour: every pattern on a Flax model's params.

Run with `python -m sparsejax.demo`. It builds a small Linen transformer-style
MLP, computes masks with each pattern (N:M, transposable 2:4, unstructured,
block, channel, ERK-distributed unstructured), applies them, prints the
sparsity summary, and packs the masks to show their storage cost.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

import sparsejax as sj


class Net(nn.Module):
  """Embedding, two MLP blocks and a head: enough leaves to show rules."""

  @nn.compact
  def __call__(self, tokens):
    x = nn.Embed(256, 128, name="embed")(tokens)
    for i in range(2):
      h = nn.Dense(512, name=f"block_{i}_mlp_fc1")(nn.LayerNorm()(x))
      x = x + nn.Dense(128, name=f"block_{i}_mlp_fc2")(nn.gelu(h))
    return nn.Dense(256, name="head")(x)


def main():
  """Prints one summary per pattern and the packed-mask storage saving."""
  params = Net().init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
  rule_sets = {
      "N:M 2:4 on fc1, 1:8 elsewhere": [
          sj.Rule(r".*fc1/kernel", sj.NM(2, 4)),
          sj.Rule(r".*kernel", sj.NM(1, 8))],
      "transposable 2:4": [sj.Rule(r".*kernel",
                                   sj.NM(2, 4, transposable=True))],
      "unstructured 90%": [sj.Rule(r".*kernel", sj.Unstructured(0.9))],
      "block 32x32 75%": [sj.Rule(r".*kernel", sj.Block((32, 32), 0.75))],
      "output channels 50%": [sj.Rule(r".*mlp.*kernel", sj.Channel(0.5))],
  }
  for title, rules in rule_sets.items():
    print(f"\n== {title}")
    masks = sj.compute_masks(params, rules)
    sj.summarize(params, masks, rules)
  rules = [sj.Rule(r".*kernel", sj.Unstructured(0.9))]
  masks = sj.compute_masks(params, rules,
                           sparsity=sj.distributions.erk(params, rules, 0.9))
  print("\n== ERK-distributed unstructured, 90% overall")
  sj.summarize(params, masks, rules)
  packed = sj.pack_masks(masks)
  bool_bytes = sum(m.size for m in jax.tree.leaves(masks))
  packed_bytes = sum(m.size for m in jax.tree.leaves(packed))
  print(f"\nmask storage: {bool_bytes:,} B as bool, {packed_bytes:,} B packed "
        f"({bool_bytes / packed_bytes:.1f}x smaller)")


if __name__ == "__main__":
  main()
