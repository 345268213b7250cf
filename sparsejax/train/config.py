"""The pretraining configuration: the embedded default, its variants, checks.

A run is described by one ``ml_collections.ConfigDict`` (see
:func:`get_config` for every key and its meaning). Config files in
``configs/`` start from :func:`get_config` and change what their recipe
needs, so every recipe has the same keys; :func:`validate` rejects unknown
keys and bad values with a message naming the key, before any compute.

Sparsity rules are written as one string so that they can be overridden on
the command line: ``"REGEX=PATTERN;REGEX=PATTERN"`` where ``PATTERN`` is
``n:m`` (N:M along the contraction axis) or a float sparsity (unstructured),
e.g. ``"block_.*/mlp/.*/kernel=1:8;block_.*/attn/.*/kernel=2:4"``.
"""
from __future__ import annotations

import json
from typing import Any

import ml_collections
from ml_collections import config_dict

import sparsejax as sj

__all__ = [
    "ConfigError",
    "METHODS",
    "RESUME_FREE",
    "get_config",
    "gpt_small",
    "tpu_pod",
    "validate",
    "parse_pattern",
    "parse_rules",
    "resume_fields",
    "drop_free",
    "to_dict",
]

METHODS = ("none", "progressive_nm", "srste_nm", "ste_nm", "sste",
           "gradual_magnitude", "rigl", "set", "static_random")
"""Values of ``sparsity.method``; ``"none"`` trains the dense model only."""

RESUME_FREE = ("mesh", "checkpoint", "log_every", "eval", "outputs",
               "distributed", "progress", "sparsity.baseline")
"""Keys (sections or dotted keys) that may change between a run and its
resumption: they do not shape the trajectory of an arm's params."""

ALL_BLOCK_KERNELS = r"blocks?(_\d+)?/(attn|mlp)/\w+/kernel"
"""Every Dense kernel of the transformer blocks (per-layer or scanned)."""

MLP_KERNELS = r"blocks?(_\d+)?/mlp/\w+/kernel"
"""The feed-forward kernels of the transformer blocks."""

ATTN_KERNELS = r"blocks?(_\d+)?/attn/\w+/kernel"
"""The attention projections of the transformer blocks."""


class ConfigError(ValueError):
  """A configuration (or workdir) that cannot be run; raised before compute."""


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """Returns the embedded default configuration, or one of its variants.

  The default trains a small byte-level GPT on the ``pydoc_data`` help text
  that ships with Python, with progressive 2:4 sparsity (stepwise structure
  decay 3:4 -> 2:4, linear mask decay, a dense warm-up and a hard-mask
  fine-tune), next to a dense baseline of the same config.

  Args:
    variant: ``""`` (the default), ``"smoke"`` (a few steps of a tiny model,
      for CI), ``"srste"`` (2:4 SR-STE instead of progressive) or
      ``"dense"`` (the dense model only).

  Returns:
    An unlocked ``ConfigDict``.

  Example:
    >>> cfg = get_config("smoke")
    >>> cfg.sparsity.method, cfg.train.steps
    ('progressive_nm', 12)
  """
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.source = "pydoc"        # "pydoc" or "files"
  c.data.paths = ""              # comma-separated text files or folders
  c.data.val_fraction = 0.1
  c.data.seq_len = 64
  c.data.batch_size = 32         # global batch size

  c.model = ml_collections.ConfigDict()
  c.model.d_model = 128
  c.model.n_layers = 2
  c.model.n_heads = 4
  c.model.d_ff = 512
  c.model.dropout = 0.0
  c.model.positions = "learned"
  c.model.tie_embeddings = False
  c.model.scan_layers = False
  c.model.remat = False
  c.model.dtype = "float32"

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 3e-3
  c.optim.warmup_steps = 40
  c.optim.end_lr_fraction = 0.1
  c.optim.b1 = 0.9
  c.optim.b2 = 0.98
  c.optim.weight_decay = 0.1
  c.optim.clip_norm = 1.0

  c.train = ml_collections.ConfigDict()
  c.train.steps = 500

  c.sparsity = ml_collections.ConfigDict()
  c.sparsity.method = "progressive_nm"
  c.sparsity.rules = f"{ALL_BLOCK_KERNELS}=2:4"
  c.sparsity.baseline = True      # also train the dense model of this config
  # Progressive N:M: phases as fractions of train.steps.
  c.sparsity.dense_fraction = 0.15
  c.sparsity.finetune_fraction = 0.2
  c.sparsity.structure = "stepwise"   # "", "stepwise" or "geometric"
  c.sparsity.decay = "linear"         # "", "linear" or "exponential"
  # Mask-decay rate; None: the method default (linear 8e-4, exp. 1e-4).
  c.sparsity.c = config_dict.placeholder(float)
  c.sparsity.c = 4e-3  # linear: beta falls 1 -> 0 over 250 sparse steps
  c.sparsity.grad = "identity"        # "identity" or "autodiff"
  # SR-STE.
  c.sparsity.srste_decay = 2e-4
  # Gradual magnitude pruning: window as fractions of train.steps.
  c.sparsity.begin_fraction = 0.25
  c.sparsity.end_fraction = 0.75
  c.sparsity.frequency = 100
  # RigL / SET / static random.
  c.sparsity.distribution = "erk"     # "", "uniform" or "erk"
  c.sparsity.target = 0.9             # global sparsity for a distribution
  c.sparsity.alpha = 0.3
  c.sparsity.delta_t = 100
  c.sparsity.t_end_fraction = 0.75

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1                    # -1: all devices left over
  c.mesh.fsdp = 1
  c.mesh.tensor = 1

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 250
  c.checkpoint.keep = 2
  c.checkpoint.async_save = True

  c.eval = ml_collections.ConfigDict()
  c.eval.every = 250
  c.eval.batch_size = 32
  c.eval.max_windows = 0              # 0: the whole validation split

  c.outputs = ml_collections.ConfigDict()
  c.outputs.plots = True
  c.outputs.tensorboard = False
  c.outputs.export = True

  c.log_every = 10
  c.progress = True
  c.distributed = False               # call jax.distributed.initialize()

  if variant in ("", "default"):
    pass
  elif variant == "smoke":
    c.data.seq_len = 32
    c.data.batch_size = 8
    c.model.d_model = 32
    c.model.n_layers = 1
    c.model.n_heads = 2
    c.model.d_ff = 64
    c.optim.warmup_steps = 2
    c.train.steps = 12
    c.sparsity.dense_fraction = 0.25
    c.sparsity.finetune_fraction = 0.25
    c.sparsity.c = 0.2
    c.checkpoint.every = 4
    c.eval.every = 6
    c.eval.batch_size = 8
    c.eval.max_windows = 16
    c.log_every = 2
    c.outputs.plots = False
  elif variant == "srste":
    c.sparsity.method = "srste_nm"
  elif variant == "dense":
    c.sparsity.method = "none"
  else:
    raise ConfigError(f"unknown config variant {variant!r}; choose one of "
                      "'', 'smoke', 'srste', 'dense'.")
  return c


def to_dict(config: Any) -> dict[str, Any]:
  """A plain JSON-compatible dict of a config.

  Args:
    config: A ``ConfigDict`` (or a plain dict).

  Returns:
    Nested dicts of JSON scalars.

  Example:
    >>> to_dict(get_config("smoke"))["model"]["d_model"]
    32
  """
  if isinstance(config, ml_collections.ConfigDict):
    return json.loads(config.to_json_best_effort(sort_keys=True))
  return json.loads(json.dumps(config, sort_keys=True, default=str))


def resume_fields(config: Any) -> dict[str, Any]:
  """The part of a config that a resumed run must share with the original.

  Everything but :data:`RESUME_FREE` (mesh, checkpointing, logging,
  evaluation, outputs) determines the trajectory of the parameters.

  Args:
    config: A ``ConfigDict``.

  Returns:
    A plain dict.

  Example:
    >>> "mesh" in resume_fields(get_config()), "model" in resume_fields(
    ...     get_config())
    (False, True)
  """
  return drop_free(to_dict(config))


def drop_free(tree: dict[str, Any]) -> dict[str, Any]:
  """Removes the :data:`RESUME_FREE` keys from a config dict.

  Args:
    tree: A plain dict of a config.

  Returns:
    A copy without the free keys.

  Example:
    >>> sorted(drop_free({"mesh": 1, "sparsity": {"baseline": 1, "c": 2}}))
    ['sparsity']
  """
  out = json.loads(json.dumps(tree))
  for key in RESUME_FREE:
    *parents, leaf = key.split(".")
    node = out
    for p in parents:
      node = node.get(p, {}) if isinstance(node, dict) else {}
    if isinstance(node, dict):
      node.pop(leaf, None)
  return out


def parse_pattern(text: str) -> Any:
  """Parses ``"n:m"`` (N:M), a float (unstructured sparsity) or ``"dense"``.

  Args:
    text: The pattern as written in a rule.

  Returns:
    A ``sparsejax`` pattern, or ``None`` for ``"dense"``.

  Example:
    >>> str(parse_pattern("2:4")), parse_pattern("0.9").sparsity
    ('2:4', 0.9)
  """
  text = text.strip()
  if text == "dense":
    return None
  if ":" in text:
    n, _, m = text.partition(":")
    try:
      return sj.NM(int(n), int(m))
    except (TypeError, ValueError) as e:
      raise ConfigError(f"bad N:M pattern {text!r}: {e}") from None
  try:
    return sj.Unstructured(float(text))
  except (TypeError, ValueError) as e:
    raise ConfigError(f"bad pattern {text!r}: expected 'n:m', a sparsity in "
                      f"[0, 1) or 'dense' ({e}).") from None


def parse_rules(spec: str) -> list[Any]:
  """Parses ``"REGEX=PATTERN;REGEX=PATTERN"`` into ``sparsejax.Rule``\\ s.

  Args:
    spec: The rules string of ``sparsity.rules``.

  Returns:
    A list of rules, first match wins.

  Example:
    >>> [str(r.pattern) for r in parse_rules(".*mlp.*=1:8; .*attn.*=2:4")]
    ['1:8', '2:4']
  """
  rules = []
  for part in spec.split(";"):
    part = part.strip()
    if not part:
      continue
    regex, sep, pattern = part.rpartition("=")
    if not sep or not regex.strip():
      raise ConfigError(f"bad sparsity rule {part!r}: expected "
                        "'REGEX=PATTERN' (e.g. '.*mlp.*kernel=1:8').")
    rules.append(sj.Rule(regex.strip(), parse_pattern(pattern)))
  if not rules:
    raise ConfigError("sparsity.rules is empty; give at least one "
                      "'REGEX=PATTERN' rule or set sparsity.method='none'.")
  return rules


def _unknown_keys(config: Any, schema: Any, prefix: str = "") -> list[str]:
  out = []
  for key in config.keys():
    name = prefix + key
    if key not in schema:
      out.append(name)
    elif isinstance(schema[key], ml_collections.ConfigDict):
      if not isinstance(config[key], (ml_collections.ConfigDict, dict)):
        out.append(name + " (expected a section)")
      else:
        out.extend(_unknown_keys(config[key], schema[key], name + "."))
  return out


def _choice(value: Any, name: str, choices: tuple[Any, ...]) -> None:
  if value not in choices:
    raise ConfigError(f"{name}={value!r}; choose one of {choices}.")


def _positive(value: Any, name: str, allow_zero: bool = False) -> None:
  ok = value >= 0 if allow_zero else value > 0
  if not ok:
    raise ConfigError(f"{name}={value!r} must be "
                      f"{'>= 0' if allow_zero else '> 0'}.")


def _fraction(value: Any, name: str) -> None:
  if not 0.0 <= float(value) <= 1.0:
    raise ConfigError(f"{name}={value!r} must be in [0, 1].")


def validate(config: Any) -> None:
  """Checks a config's keys and values; raises :class:`ConfigError`.

  Shape checks that need the model (an N:M pattern that does not divide a
  layer, a mesh that does not divide a dimension) come later, in
  :func:`sparsejax.train.loop.plan`, still before any compute.

  Args:
    config: A ``ConfigDict`` built from :func:`get_config`.

  Example:
    >>> cfg = get_config("smoke")
    >>> validate(cfg)
    >>> cfg.sparsity.method = "magic"
    >>> validate(cfg)
    Traceback (most recent call last):
    ...
    sparsejax.train.config.ConfigError: sparsity.method='magic'; choose one of ...
  """
  unknown = _unknown_keys(config, get_config())
  if unknown:
    raise ConfigError(f"unknown config key(s): {', '.join(unknown)}. Every "
                      "config starts from sparsejax.train.config.get_config(); "
                      "check the spelling.")
  d, m, o, s, t = (config.data, config.model, config.optim, config.sparsity,
                   config.train)
  _choice(d.source, "data.source", ("pydoc", "files"))
  if d.source == "files" and not d.paths:
    raise ConfigError("data.source='files' needs data.paths (comma-separated "
                      "text files or folders).")
  if not 0.0 < d.val_fraction < 1.0:
    raise ConfigError(f"data.val_fraction={d.val_fraction} must be in (0, 1).")
  for name in ("seq_len", "batch_size"):
    _positive(d[name], f"data.{name}")
  for name in ("d_model", "n_layers", "n_heads", "d_ff"):
    _positive(m[name], f"model.{name}")
  if m.d_model % m.n_heads:
    raise ConfigError(f"model.d_model={m.d_model} is not divisible by "
                      f"model.n_heads={m.n_heads}.")
  _choice(m.positions, "model.positions", ("learned", "rotary"))
  _choice(m.dtype, "model.dtype", ("float32", "bfloat16"))
  _fraction(m.dropout, "model.dropout")
  _positive(o.lr, "optim.lr")
  _positive(o.warmup_steps, "optim.warmup_steps", allow_zero=True)
  _fraction(o.end_lr_fraction, "optim.end_lr_fraction")
  _positive(o.clip_norm, "optim.clip_norm", allow_zero=True)
  _positive(t.steps, "train.steps")
  if o.warmup_steps >= t.steps:
    raise ConfigError(f"optim.warmup_steps={o.warmup_steps} must be < "
                      f"train.steps={t.steps}.")
  _choice(s.method, "sparsity.method", METHODS)
  if s.method != "none":
    parse_rules(s.rules)
  _choice(s.structure, "sparsity.structure", ("", "stepwise", "geometric"))
  _choice(s.decay, "sparsity.decay", ("", "linear", "exponential"))
  _choice(s.grad, "sparsity.grad", ("identity", "autodiff"))
  _choice(s.distribution, "sparsity.distribution", ("", "uniform", "erk"))
  for name in ("dense_fraction", "finetune_fraction", "begin_fraction",
               "end_fraction", "t_end_fraction", "alpha", "target"):
    _fraction(s[name], f"sparsity.{name}")
  if s.method == "progressive_nm":
    dense = int(round(s.dense_fraction * t.steps))
    fine = int(round(s.finetune_fraction * t.steps))
    if dense + fine >= t.steps:
      raise ConfigError(
          f"sparsity.dense_fraction + sparsity.finetune_fraction leave no "
          f"sparse phase in {t.steps} steps ({dense} dense + {fine} "
          "fine-tune).")
  if s.method == "gradual_magnitude" and s.end_fraction <= s.begin_fraction:
    raise ConfigError("sparsity.end_fraction must be > begin_fraction.")
  for name in ("frequency", "delta_t"):
    _positive(s[name], f"sparsity.{name}")
  for name in ("data", "fsdp", "tensor"):
    v = config.mesh[name]
    if v != -1 and v < 1:
      raise ConfigError(f"mesh.{name}={v} must be >= 1 (or -1 for 'the rest' "
                        "on one axis).")
  if sum(config.mesh[n] == -1 for n in ("data", "fsdp", "tensor")) > 1:
    raise ConfigError("at most one mesh axis may be -1.")
  _positive(config.checkpoint.every, "checkpoint.every")
  _positive(config.checkpoint.keep, "checkpoint.keep")
  _positive(config.eval.every, "eval.every")
  _positive(config.eval.batch_size, "eval.batch_size")
  _positive(config.eval.max_windows, "eval.max_windows", allow_zero=True)
  _positive(config.log_every, "log_every")


def gpt_small(method: str = "none") -> ml_collections.ConfigDict:
  """GPT-small scale (12 layers, width 768, ~85M block weights) on a GPU box.

  Byte-level tokens, sequences of 1024, a global batch of 256 sequences,
  AdamW with the GPT-2 hyper-parameters, 100k steps; data from plain text
  files (``data.paths``). The mesh is pure data parallel over every local
  device. The recipes in ``configs/gpt_small_*.py`` set the sparsity.

  Args:
    method: ``sparsity.method``.

  Returns:
    A ``ConfigDict``.

  Example:
    >>> c = gpt_small("srste_nm")
    >>> c.model.d_model, c.data.seq_len, c.sparsity.baseline
    (768, 1024, False)
  """
  c = get_config()
  c.data.source = "files"
  c.data.seq_len = 1024
  c.data.batch_size = 256
  c.data.val_fraction = 0.005
  c.model.d_model = 768
  c.model.n_layers = 12
  c.model.n_heads = 12
  c.model.d_ff = 3072
  c.model.remat = True
  c.optim.lr = 6e-4
  c.optim.warmup_steps = 2000
  c.optim.b2 = 0.95
  c.optim.weight_decay = 0.1
  c.optim.end_lr_fraction = 0.1
  c.train.steps = 100_000
  c.sparsity.method = method
  c.sparsity.baseline = False
  c.sparsity.frequency = 1000
  c.checkpoint.every = 2000
  c.checkpoint.keep = 3
  c.eval.every = 2000
  c.eval.batch_size = 64
  c.eval.max_windows = 1024
  c.log_every = 50
  c.progress = False
  return c


def tpu_pod(method: str = "none") -> ml_collections.ConfigDict:
  """TPU-pod-slice scale (24 layers, width 2048, ~1.2B block weights).

  bfloat16 compute, scanned and rematerialised blocks, sequences of 2048, a
  global batch of 1024 sequences; parameters sharded 8-way (``fsdp``) and the
  batch over every chip; one process per host
  (``distributed=True``), each loading only its rows.

  Args:
    method: ``sparsity.method``.

  Returns:
    A ``ConfigDict``.

  Example:
    >>> c = tpu_pod("progressive_nm")
    >>> c.model.scan_layers, c.mesh.fsdp, c.distributed
    (True, 8, True)
  """
  c = gpt_small(method)
  c.data.seq_len = 2048
  c.data.batch_size = 1024
  c.model.d_model = 2048
  c.model.n_layers = 24
  c.model.n_heads = 16
  c.model.d_ff = 8192
  c.model.dtype = "bfloat16"
  c.model.scan_layers = True
  c.model.remat = True
  c.model.positions = "rotary"
  c.optim.lr = 2e-4
  c.optim.warmup_steps = 1000
  c.train.steps = 200_000
  c.mesh.data = -1
  c.mesh.fsdp = 8
  c.mesh.tensor = 1
  c.eval.batch_size = 256
  c.distributed = True
  return c
