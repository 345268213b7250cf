"""Tests of the reference models in `sparsejax.models`."""
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import Mesh

from sparsejax.models import cnn
from sparsejax.models import gpt
from sparsejax.models import mlp
from sparsejax.models import vit
from sparsejax.pretrain import corpus as corpus_lib
from sparsejax.pretrain import data
from sparsejax.pretrain import evaluate as evaluate_lib
from sparsejax.pretrain import pipeline


def _paths(tree):
  """'/'-joined key paths of every leaf of a (nested dict / NNX state) tree."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    keys = []
    for k in path:
      for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
          keys.append(str(getattr(k, attr)))
          break
    out["/".join(keys)] = leaf
  return out


def _nnx_param_paths(model):
  return _paths(nnx.to_pure_dict(nnx.state(model, nnx.Param)))


# ---------------------------------------------------------------------------
# NNX models
# ---------------------------------------------------------------------------


def _small_nnx_models():
  rngs = nnx.Rngs(0)
  return {
      "mlp": (mlp.MLP(4, (64, 64), 3, rngs=rngs), jnp.ones((2, 4)), (2, 3)),
      "cnn": (cnn.CNN(1, 10, features=(16, 64), hidden=64, rngs=rngs),
              jnp.ones((2, 8, 8, 1)), (2, 10)),
      "vit": (vit.ViT(8, 4, 1, 4, dim=64, depth=2, num_heads=2, mlp_dim=128,
                      rngs=rngs), jnp.ones((2, 8, 8, 1)), (2, 4)),
  }


@pytest.fixture(scope="module")
def nnx_models():
  return _small_nnx_models()


@pytest.mark.parametrize("name", ["mlp", "cnn", "vit"])
def test_nnx_output_shape_and_jit_matches_eager(nnx_models, name, maybe_jit):
  model, x, shape = nnx_models[name]
  graphdef, state = nnx.split(model)

  def forward(state, x):
    return nnx.merge(graphdef, state)(x)

  out = maybe_jit(forward)(state, x)
  assert out.shape == shape
  np.testing.assert_allclose(out, model(x), rtol=1e-5, atol=1e-5)
  assert np.isfinite(np.asarray(out)).all()


@pytest.mark.parametrize("name", ["mlp", "cnn", "vit"])
def test_nnx_split_merge_round_trip(nnx_models, name):
  model, x, _ = nnx_models[name]
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  # Perturb the params functionally, merge, and check the change is visible.
  bumped = jax.tree.map(lambda p: p + 1.0, params)
  clone = nnx.merge(graphdef, bumped, rest)
  assert not np.allclose(clone(x), model(x))
  restored = nnx.merge(graphdef, params, rest)
  np.testing.assert_array_equal(restored(x), model(x))
  a = _nnx_param_paths(restored)
  b = _nnx_param_paths(model)
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])


def test_mlp_param_paths(nnx_models):
  paths = _nnx_param_paths(nnx_models["mlp"][0])
  assert paths["hidden/0/kernel"].shape == (4, 64)
  assert paths["hidden/1/kernel"].shape == (64, 64)
  assert paths["head/kernel"].shape == (64, 3)
  hidden = [p for p in paths if re.fullmatch(r".*hidden.*kernel", p)]
  assert sorted(hidden) == ["hidden/0/kernel", "hidden/1/kernel"]


def test_cnn_param_paths_and_conv_layout(nnx_models):
  paths = _nnx_param_paths(nnx_models["cnn"][0])
  assert paths["convs/0/kernel"].shape == (3, 3, 1, 16)  # (h, w, in, out)
  assert paths["convs/1/kernel"].shape == (3, 3, 16, 64)
  assert paths["fc1/kernel"].shape == (64, 64)
  assert paths["head/kernel"].shape == (64, 10)


def test_cnn_accepts_any_image_size(nnx_models):
  model = nnx_models["cnn"][0]
  assert model(jnp.ones((1, 12, 20, 1))).shape == (1, 10)
  assert model(jnp.ones((1, 3, 3, 1))).shape == (1, 10)


def test_vit_param_paths(nnx_models):
  paths = _nnx_param_paths(nnx_models["vit"][0])
  for i in range(2):
    for proj in ("query", "key", "value", "out"):
      assert paths[f"blocks/{i}/attn/{proj}/kernel"].shape == (64, 64)
    assert paths[f"blocks/{i}/mlp/fc1/kernel"].shape == (64, 128)
    assert paths[f"blocks/{i}/mlp/fc2/kernel"].shape == (128, 64)
  assert paths["patch_embed/kernel"].shape == (4, 4, 1, 64)
  assert paths["pos_embed"].shape == (1, 5, 64)  # 4 patches + class token
  assert paths["cls_token"].shape == (1, 1, 64)
  attn = [p for p in paths if re.fullmatch(r".*attn.*kernel", p)]
  mlps = [p for p in paths if re.fullmatch(r".*mlp.*kernel", p)]
  assert len(attn) == 8 and len(mlps) == 4


def test_vit_mean_pool_and_patch_order_matters():
  model = vit.ViT(8, 4, 1, 4, dim=64, depth=2, num_heads=2, mlp_dim=128,
                  pool="mean", rngs=nnx.Rngs(2))
  assert "cls_token" not in _nnx_param_paths(model)
  x = jax.random.normal(jax.random.key(0), (1, 8, 8, 1))
  out = model(x)
  assert out.shape == (1, 4)
  # Swapping two patches changes the output (position embeddings are used).
  swapped = x.at[:, :4, :4].set(x[:, 4:, 4:]).at[:, 4:, 4:].set(x[:, :4, :4])
  assert not np.allclose(model(swapped), out)


def test_vit_attention_mixes_tokens():
  attn = vit.SelfAttention(64, 2, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (2, 5, 64))
  y = attn(x)
  y2 = attn(x.at[:, 4].set(0.0))
  # Bidirectional: changing the last token changes the first token's output.
  assert not np.allclose(y[:, 0], y2[:, 0])


# ---------------------------------------------------------------------------
# GPT (Linen)
# ---------------------------------------------------------------------------

TINY = dict(d_model=64, n_layers=2, n_heads=2, d_ff=128, max_len=32)


@pytest.fixture(scope="module")
def tiny_gpt():
  model = gpt.GPT(gpt.GPTConfig(**TINY))
  params = gpt.init_params(model, jax.random.key(0))
  tokens = jnp.asarray(
      np.random.default_rng(0).integers(0, 256, size=(2, 16)), jnp.int32)
  logits = jax.jit(model.apply)({"params": params}, tokens)
  return model, params, tokens, logits


def test_gpt_shapes_and_param_paths(tiny_gpt):
  model, params, tokens, logits = tiny_gpt
  assert logits.shape == (2, 16, 256)
  paths = _paths(params)
  for i in range(2):
    for proj in ("query", "key", "value", "out"):
      assert paths[f"block_{i}/attn/{proj}/kernel"].shape == (64, 64)
    assert paths[f"block_{i}/mlp/fc1/kernel"].shape == (64, 128)
    assert paths[f"block_{i}/mlp/fc2/kernel"].shape == (128, 64)
  assert paths["lm_head/kernel"].shape == (64, 256)
  assert paths["token_embed/embedding"].shape == (256, 64)
  assert paths["pos_embed/embedding"].shape == (32, 64)
  mlps = sorted(p for p in paths if re.fullmatch(r".*mlp.*kernel", p))
  attn = sorted(p for p in paths if re.fullmatch(r".*attn.*kernel", p))
  assert mlps == [f"block_{i}/mlp/fc{j}/kernel" for i in (0, 1) for j in (1, 2)]
  assert len(attn) == 8
  # Every kernel is a 2-D (in, out) Dense kernel.
  for p, leaf in paths.items():
    if p.endswith("kernel"):
      assert leaf.ndim == 2


def test_gpt_jit_matches_eager(tiny_gpt, maybe_jit):
  model, params, tokens, logits = tiny_gpt
  out = maybe_jit(model.apply)({"params": params}, tokens)
  np.testing.assert_allclose(out, logits, rtol=1e-5, atol=1e-5)


def test_gpt_is_causal(tiny_gpt):
  model, params, tokens, logits = tiny_gpt
  changed = tokens.at[:, 10].set((tokens[:, 10] + 1) % 256)
  out = jax.jit(model.apply)({"params": params}, changed)
  np.testing.assert_allclose(out[:, :10], logits[:, :10], atol=1e-5)
  assert not np.allclose(out[:, 10:], logits[:, 10:], atol=1e-5)


def test_gpt_logical_axis_annotations(tiny_gpt):
  model, _, tokens, _ = tiny_gpt
  boxed = jax.eval_shape(model.init, jax.random.key(0), tokens)["params"]
  leaves = jax.tree.leaves(
      boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  assert leaves and all(
      isinstance(x, nn.LogicallyPartitioned) and len(x.names) == x.value.ndim
      for x in leaves)
  specs = _paths(gpt.logical_partition_specs(model))
  assert tuple(specs["block_0/mlp/fc1/kernel"]) == ("embed", "mlp")
  assert tuple(specs["block_0/mlp/fc2/kernel"]) == ("mlp", "embed")
  assert tuple(specs["block_1/attn/query/kernel"]) == ("embed", "heads")
  assert tuple(specs["block_1/attn/out/kernel"]) == ("heads", "embed")
  assert tuple(specs["token_embed/embedding"]) == ("vocab", "embed")
  assert tuple(specs["lm_head/kernel"]) == ("embed", "vocab")

  scanned = gpt.GPT(gpt.GPTConfig(**TINY, scan_layers=True))
  sspecs = _paths(gpt.logical_partition_specs(scanned))
  assert tuple(sspecs["blocks/mlp/fc1/kernel"]) == ("layers", "embed", "mlp")


def test_gpt_sharded_forward_matches(tiny_gpt):
  model, params, tokens, logits = tiny_gpt
  mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))
  rules = gpt.default_logical_rules()
  shardings = nn.logical_to_mesh_sharding(
      gpt.logical_partition_specs(model), mesh, rules)
  sharded = jax.device_put(params, shardings)
  fc1 = sharded["block_0"]["mlp"]["fc1"]["kernel"]
  assert tuple(fc1.sharding.spec) == (None, "model")
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    out = jax.jit(model.apply)({"params": sharded}, tokens)
  assert tuple(out.sharding.spec)[0] == "data"
  np.testing.assert_allclose(out, logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("scan,remat", [(True, False), (True, True)])
def test_gpt_scan_and_remat_match_plain(tiny_gpt, scan, remat):
  _, params, tokens, logits = tiny_gpt
  cfg = gpt.GPTConfig(**TINY, scan_layers=scan, remat=remat)
  model = gpt.GPT(cfg)
  p = gpt.stack_layers(params, cfg.n_layers) if scan else params
  shapes = jax.eval_shape(lambda: gpt.init_params(model, jax.random.key(0)))
  assert jax.tree.structure(shapes) == jax.tree.structure(p)
  out = jax.jit(model.apply)({"params": p}, tokens)
  np.testing.assert_allclose(out, logits, rtol=1e-5, atol=1e-5)
  if scan:
    back = gpt.unstack_layers(p)
    assert jax.tree.structure(back) == jax.tree.structure(params)
    np.testing.assert_array_equal(back["block_1"]["mlp"]["fc2"]["kernel"],
                                  params["block_1"]["mlp"]["fc2"]["kernel"])


def test_gpt_remat_gradients_match(tiny_gpt):
  _, params, tokens, _ = tiny_gpt
  batch = {"inputs": tokens, "targets": jnp.roll(tokens, -1, axis=1)}
  grads = []
  for remat in (False, True):
    model = gpt.GPT(gpt.GPTConfig(**TINY, remat=remat))
    grads.append(jax.jit(jax.grad(gpt.make_loss_fn(model)))(params, batch))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
               *grads)


def test_gpt_variants_rotary_tied():
  cfg = gpt.GPTConfig(**TINY, positions="rotary", tie_embeddings=True)
  model = gpt.GPT(cfg)
  params = gpt.init_params(model, jax.random.key(1))
  assert "pos_embed" not in params and "lm_head" not in params
  # Rotary has no length table, so sequences longer than max_len work.
  tokens = jnp.asarray(
      np.random.default_rng(3).integers(0, 256, (1, 40)), jnp.int32)
  apply = jax.jit(model.apply)
  out = apply({"params": params}, tokens)
  assert out.shape == (1, 40, 256)
  # Without positions, causal attention would see the prefix as a bag of
  # tokens; with RoPE, swapping two earlier tokens changes later outputs.
  swapped = tokens.at[0, 0].set(tokens[0, 1]).at[0, 1].set(tokens[0, 0])
  out2 = apply({"params": params}, swapped)
  assert not np.allclose(out[0, 5:], out2[0, 5:], atol=1e-5)
  with pytest.raises(ValueError, match="max_len"):
    gpt.GPT(gpt.GPTConfig(**TINY)).init(jax.random.key(0), tokens)


def test_gpt_dropout_needs_rng_and_changes_output(tiny_gpt):
  _, params, tokens, _ = tiny_gpt
  model = gpt.GPT(gpt.GPTConfig(**TINY, dropout=0.5))
  batch = {"inputs": tokens, "targets": tokens}
  loss_fn = jax.jit(gpt.make_loss_fn(model))
  a = loss_fn(params, batch)
  b = loss_fn(params, batch, jax.random.key(1))
  c = loss_fn(params, batch, jax.random.key(2))
  assert float(a) != float(b) and float(b) != float(c)
  np.testing.assert_allclose(a, loss_fn(params, batch), rtol=0, atol=0)


def test_gpt_loss_decreases_on_pydoc_corpus():
  tokens = data.encode(data.pydoc_corpus())
  train, val = data.train_val_split(tokens, 0.1)
  model = gpt.GPT(gpt.GPTConfig(**TINY))
  params = gpt.init_params(model, jax.random.key(0))
  tx = optax.adam(3e-3)
  opt_state = tx.init(params)
  loss_fn = gpt.make_loss_fn(model)

  @jax.jit
  def step(params, opt_state, batch):
    loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  batches = pipeline.train_dataset(corpus_lib.TokenWindows(train, 32),
                                   batch_size=16, seed=0)
  losses = []
  for t in range(30):
    batch = batches[t]
    params, opt_state, loss = step(params, opt_state, batch)
    losses.append(float(loss))
  assert losses[0] > 5.0  # about log(256) at initialisation
  assert np.mean(losses[-5:]) < losses[0] - 1.5

  initial = gpt.init_params(model, jax.random.key(0))
  before = evaluate_lib.evaluate(model, initial, val[:2049], seq_len=32,
                                 batch_size=16)
  after = evaluate_lib.evaluate(model, params, val[:2049], seq_len=32,
                                batch_size=16)
  assert after["tokens"] == 2048
  assert after["loss"] < before["loss"] - 1.0
  np.testing.assert_allclose(after["perplexity"], np.exp(after["loss"]),
                             rtol=1e-6)


def test_evaluate_matches_lm_loss_with_padding(tiny_gpt):
  model, params, _, _ = tiny_gpt
  tokens = np.random.default_rng(1).integers(0, 256, 5 * 16 + 1)
  # 5 windows in batches of 2: the last batch is padded.
  res = evaluate_lib.evaluate(model, params, tokens, seq_len=16,
                              batch_size=2)
  windows = data.sequential_windows(tokens, 16)
  expected = jax.jit(gpt.lm_loss, static_argnums=0)(model, params, windows)
  assert res["tokens"] == 80
  np.testing.assert_allclose(res["loss"], expected, rtol=1e-5)


def test_cross_entropy_weights():
  logits = jnp.log(jnp.array([[[0.5, 0.5], [0.9, 0.1]]]))
  targets = jnp.array([[0, 0]])
  full = gpt.cross_entropy(logits, targets)
  first = gpt.cross_entropy(logits, targets, jnp.array([[1, 0]]))
  np.testing.assert_allclose(full, -(np.log(0.5) + np.log(0.9)) / 2, rtol=1e-6)
  np.testing.assert_allclose(first, -np.log(0.5), rtol=1e-6)


def test_gpt_config_validation():
  with pytest.raises(ValueError, match="n_heads"):
    gpt.GPTConfig(d_model=64, n_heads=3)
  with pytest.raises(ValueError, match="positions"):
    gpt.GPTConfig(positions="alibi")


def test_default_logical_rules_fsdp():
  rules = dict(gpt.default_logical_rules(fsdp="fsdp"))
  assert rules["batch"] == ("data", "fsdp")
  assert rules["embed"] == "fsdp"
  assert dict(gpt.default_logical_rules(model=None))["mlp"] is None


def test_gpt_dense_calls_can_be_intercepted(tiny_gpt):
  """One-shot calibration sees every Dense call under its parameter path."""
  model, params, tokens, _ = tiny_gpt
  seen = {}

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, nn.Dense) and context.method_name == (
        "__call__"):
      seen["/".join(context.module.path)] = args[0].shape
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(lambda p: model.apply({"params": p}, tokens), params)
  kernels = {p[:-len("/kernel")] for p in _paths(params)
             if p.endswith("kernel")}
  assert set(seen) == kernels
  assert seen["block_1/mlp/fc2"] == (2, 16, 128)
