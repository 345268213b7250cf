"""Rules, mask trees over many pytree kinds, packing, summaries, errors."""

import warnings

import flax.linen as nn
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import sparsejax as sj


class LinenNet(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = nn.Embed(32, 16, name="embed")(x)
    x = nn.Dense(32, name="mlp_fc1")(x)
    x = nn.Conv(16, (3,), name="conv")(x)
    x = nn.LayerNorm(name="norm")(x)
    return nn.Dense(8, name="attn_out")(x)


class NNXNet(nnx.Module):

  def __init__(self, rngs):
    self.mlp = nnx.Linear(16, 32, rngs=rngs)
    self.head = nnx.Linear(32, 8, rngs=rngs)
    self.norm = nnx.LayerNorm(32, rngs=rngs)


def _linen_params():
  return LinenNet().init(jax.random.key(0), jnp.zeros((2, 4), jnp.int32))


RULES = [sj.Rule(r".*attn.*kernel", sj.NM(2, 4)),
         sj.Rule(r".*kernel", sj.NM(1, 8))]


def test_linen_params_first_match_wins_and_defaults():
  params = _linen_params()
  masks = sj.compute_masks(params, RULES)
  p = masks["params"]
  assert p["attn_out"]["kernel"].shape == (16, 8)
  assert p["attn_out"]["kernel"].mean() == 0.5
  assert float(p["mlp_fc1"]["kernel"].mean()) == pytest.approx(1 / 8)
  assert p["conv"]["kernel"].shape == (3, 32, 16)
  # Biases, norms and embeddings stay dense by default.
  for leaf in (p["mlp_fc1"]["bias"], p["norm"]["scale"],
               p["embed"]["embedding"]):
    assert sj.masks.is_dense(leaf)
  # tree.map over params and masks together works.
  masked = sj.apply_masks(params, masks)
  jax.tree.map(lambda w, m: None, params, masks)
  w = masked["params"]["mlp_fc1"]["kernel"]
  assert float((w != 0).mean()) == pytest.approx(1 / 8)


def test_embedding_masked_when_a_rule_says_so():
  params = _linen_params()
  masks = sj.compute_masks(
      params, [sj.Rule(".*embedding", sj.Unstructured(0.5), exclude=None)])
  assert masks["params"]["embed"]["embedding"].mean() == 0.5


def test_nnx_state_mirrors():
  model = NNXNet(nnx.Rngs(0))
  _, state = nnx.split(model)
  masks = sj.compute_masks(state, sj.Rule(".*kernel", sj.NM(2, 4)))
  assert jax.tree.structure(masks) == jax.tree.structure(state)
  assert masks["mlp"]["kernel"][...].mean() == 0.5
  assert sj.masks.is_dense(masks["norm"]["scale"][...])
  paths = [p for p, _ in sj.rules.named_leaves(state)]
  assert "mlp/kernel" in paths
  masked = sj.apply_masks(state, masks)
  nnx.update(model, masked)
  assert float((model.mlp.kernel[...] != 0).mean()) == 0.5


def test_lists_tuples_and_custom_nodes():
  import dataclasses

  @jax.tree_util.register_dataclass
  @dataclasses.dataclass
  class Layer:
    w: jax.Array
    b: jax.Array

  params = {"layers": [Layer(jnp.ones((8, 4)), jnp.ones(4)),
                       (jnp.ones((4, 8)), jnp.ones(8))]}
  masks = sj.compute_masks(params, sj.NM(1, 4))
  assert masks["layers"][0].w.sum() == 8
  assert sj.masks.is_dense(masks["layers"][0].b)
  assert masks["layers"][1][0].sum() == 8
  assert sj.rules.named_leaves(params)[0][0] == "layers/0/w"


def test_unused_rules_reported():
  params = _linen_params()
  rules = [sj.Rule(r".*kernal", sj.NM(2, 4))]
  with pytest.warns(UserWarning, match="kernal"):
    sj.compute_masks(params, rules)
  with pytest.raises(ValueError, match="kernal"):
    sj.compute_masks(params, rules, on_unused="error")
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    sj.compute_masks(params, rules, on_unused="ignore")
  assert [r.path for r in sj.rules.unused_rules(params, rules)] == [".*kernal"]


def test_invalid_regex_and_bad_pattern_type():
  with pytest.raises(ValueError, match="not a valid regex"):
    sj.Rule("(unclosed", sj.NM(2, 4))
  with pytest.raises(TypeError, match="pattern"):
    sj.Rule(".*", "2:4")


def test_rule_errors_name_the_leaf():
  params = {"block": {"mlp": {"kernel": jnp.ones((6, 4))}}}
  with pytest.raises(ValueError, match="'block/mlp/kernel'"):
    sj.compute_masks(params, sj.NM(2, 4))
  ints = {"step": {"kernel": jnp.ones((8, 4), jnp.int32)}}
  with pytest.raises(TypeError, match="'step/kernel'"):
    sj.compute_masks(ints, sj.NM(2, 4))


def test_apply_masks_rejects_mismatches():
  params = {"w": jnp.ones((4, 4))}
  with pytest.raises(ValueError, match="'w' has shape"):
    sj.apply_masks(params, {"w": jnp.ones((4, 2), bool)})
  with pytest.raises(ValueError, match="do not mirror"):
    sj.apply_masks(params, {"v": jnp.ones((4, 4), bool)})


def test_compute_and_apply_under_jit(maybe_jit):
  params = _linen_params()
  rules = [sj.Rule(r".*kernel", sj.Unstructured(0.75))]
  eager = sj.compute_masks(params, rules)
  fn = maybe_jit(lambda p: sj.apply_masks(p, sj.compute_masks(p, rules)))
  out = fn(params)
  expected = sj.apply_masks(params, eager)
  jax.tree.map(np.testing.assert_array_equal, out, expected)


def test_scores_random_and_saliency():
  params = {"w": jnp.arange(1., 17.).reshape(8, 2)}
  rnd = sj.compute_masks(params, sj.NM(1, 4),
                         scores=sj.scores.random(params, jax.random.key(1)))
  assert int(rnd["w"].sum()) == 4
  grads = {"w": jnp.full((8, 2), 0.01).at[0, 0].set(100.).at[4, 1].set(100.)}
  sal = sj.compute_masks(params, sj.NM(1, 4),
                         scores=sj.scores.saliency(params, grads))
  # The smallest weights of their groups win on saliency.
  assert bool(sal["w"][0, 0]) and bool(sal["w"][4, 1])
  assert int(sal["w"].sum()) == 4


def test_global_masks_one_threshold():
  params = {"a": jnp.arange(16.).reshape(4, 4),
            "b": 100 + jnp.arange(16.).reshape(4, 4)}
  masks = sj.compute_global_masks(params, sj.Unstructured(0.5), 0.5)
  assert int(masks["a"].sum()) == 0 and int(masks["b"].sum()) == 16
  masks = sj.compute_global_masks(params, sj.Unstructured(0.5), 0.75)
  assert int(masks["b"].sum()) == 8


@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(
    shape=st.sampled_from([(8,), (3, 5), (2, 3, 17), (4, 16), (1, 9)]),
    seed=st.integers(0, 1000))
def test_pack_unpack_round_trip(shape, seed):
  mask = np.random.default_rng(seed).random(shape) > 0.5
  packed = sj.pack_masks({"m": jnp.asarray(mask), "d": sj.masks.dense_mask()})
  assert packed["m"].bits.shape == shape[:-1] + (-(-shape[-1] // 8),)
  out = sj.unpack_masks(packed)
  np.testing.assert_array_equal(out["m"], mask)
  assert sj.masks.is_dense(out["d"])
  jitted = jax.jit(lambda t: sj.unpack_masks(sj.pack_masks(t)))
  np.testing.assert_array_equal(jitted({"m": jnp.asarray(mask)})["m"], mask)


def test_summary_table_and_data(capsys):
  params = _linen_params()
  masks = sj.compute_masks(params, RULES)
  summary = sj.summarize(params, masks, RULES)
  table = capsys.readouterr().out
  assert "params/attn_out/kernel" in table and "2:4" in table
  row = {r.path: r for r in summary.leaves}["params/attn_out/kernel"]
  assert row.sparsity == 0.5 and row.kept == 64
  masked = [r for r in summary.leaves if r.pattern != "dense"]
  expected = 1 - sum(r.kept for r in masked) / sum(r.size for r in masked)
  assert summary.masked_sparsity == pytest.approx(expected)
  assert 0 < summary.sparsity < summary.masked_sparsity


NAN_PARAMS = {"fc": {"kernel": jnp.array([[np.nan, 1.], [np.nan, np.inf],
                                          [np.nan, 2.], [3., 0.5]]),
                     "bias": jnp.array([np.nan, 1.])}}


def _nonfinite_call(maybe_jit, mode, fn=None):
  fn = fn or (lambda p: sj.compute_masks(p, sj.Rule(r".*kernel", sj.NM(2, 4)),
                                         on_nonfinite=mode))
  return lambda: jax.block_until_ready(maybe_jit(fn)(NAN_PARAMS))


def test_on_nonfinite_warn_names_the_leaf(maybe_jit):
  with pytest.warns(sj._checks.NonFiniteWarning,
                    match=r"params at 'fc/kernel' hold 4 non-finite") as seen:
    masks = _nonfinite_call(maybe_jit, "warn")()
  # Only the targeted leaf is reported (the dense bias is not).
  assert not any("bias" in str(w.message) for w in seen)
  # The lone number of the first group is kept; the count stays exact.
  k = np.asarray(masks["fc"]["kernel"])
  assert k[3, 0] and (k.sum(axis=0) == 2).all()


def test_on_nonfinite_error_names_the_leaf(maybe_jit):
  with pytest.raises((ValueError, jax.errors.JaxRuntimeError),
                     match=r"params at 'fc/kernel' hold 4 non-finite"):
    _nonfinite_call(maybe_jit, "error")()
  with pytest.raises((ValueError, jax.errors.JaxRuntimeError),
                     match=r"params at 'fc/kernel'"):
    _nonfinite_call(maybe_jit, "error", lambda p: sj.compute_global_masks(
        p, sj.Rule(r".*kernel", sj.Unstructured(0.5)), 0.5,
        on_nonfinite="error"))()


def test_on_nonfinite_ignore_is_silent(maybe_jit):
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    _nonfinite_call(maybe_jit, "ignore")()
    # Finite params never warn, with any mode.
    maybe_jit(lambda p: sj.compute_masks(p, sj.NM(2, 4)))(
        {"w": jnp.ones((4, 2))})


def test_traced_override_sparsity_names_the_leaf(maybe_jit):
  params = {"fc": {"kernel": jnp.ones((4, 2))}}
  fn = maybe_jit(lambda s: sj.compute_masks(
      params, sj.Unstructured(0.5), sparsity={"fc/kernel": s}))
  assert int(fn(0.5)["fc"]["kernel"].sum()) == 4
  with pytest.raises((ValueError, jax.errors.JaxRuntimeError),
                     match=r"'fc/kernel'.*\[0, 1\)"):
    jax.block_until_ready(fn(float("nan")))
