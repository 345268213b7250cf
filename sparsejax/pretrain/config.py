"""The pretraining configuration: its schema (every key, with defaults), checks.

A run is described by one ``ml_collections.ConfigDict``. :func:`get_config`
is the schema: every key a run may set, with the values of the embedded
default run. Config files in ``configs/`` (``configs/smoke.py``,
``configs/gpt_small_srste_2to4.py``, ...) start from it, or from another
config file (:func:`load_config_file`), and change what their recipe needs;
:func:`validate` rejects unknown keys and bad values with a message naming
the key, before any compute.

Sparsity rules are one string so that they can be overridden on the command
line; its syntax is :func:`sparsejax.rules.parse_rules`'s, e.g.
``"block_.*/mlp/.*/kernel=1:8;block_.*/attn/.*/kernel=2:4"``.
"""
from __future__ import annotations

import importlib.util
import json
import os
from typing import Any

import ml_collections
from ml_collections import config_dict

from sparsejax import rules as rules_lib

__all__ = [
    "ConfigError",
    "ALL_BLOCK_KERNELS",
    "MLP_KERNELS",
    "ATTN_KERNELS",
    "get_config",
    "load_config_file",
    "sparsity_rules",
    "to_dict",
    "validate",
]

ALL_BLOCK_KERNELS = r"blocks?(_\d+)?/(attn|mlp)/\w+/kernel"
"""Every Dense kernel of the transformer blocks (per-layer or scanned)."""

MLP_KERNELS = r"blocks?(_\d+)?/mlp/\w+/kernel"
"""The feed-forward kernels of the transformer blocks."""

ATTN_KERNELS = r"blocks?(_\d+)?/attn/\w+/kernel"
"""The attention projections of the transformer blocks."""


class ConfigError(ValueError):
  """A configuration (or workdir) that cannot be run; raised before compute."""


def get_config() -> ml_collections.ConfigDict:
  """The schema of a run: every key, with the values of the embedded default.

  The default trains a small byte-level GPT on the ``pydoc_data`` help text
  that ships with Python, with progressive 2:4 sparsity (stepwise structure
  decay 3:4 -> 2:4, linear mask decay, a dense warm-up and a hard-mask
  fine-tune), next to a dense baseline of the same config. It is what
  ``python -m sparsejax.pretrain`` runs without ``--config``.

  Returns:
    An unlocked ``ConfigDict``.

  Example:
    >>> cfg = get_config()
    >>> cfg.sparsity.method, cfg.train.steps, cfg.sparsity.baseline
    ('progressive_nm', 500, True)
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
  c.sparsity.method = "progressive_nm"  # "none" or a registered method name
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

  return c


def to_dict(config: Any) -> dict[str, Any]:
  """A plain JSON-compatible dict of a config.

  Args:
    config: A ``ConfigDict`` (or a plain dict).

  Returns:
    Nested dicts of JSON scalars.

  Example:
    >>> to_dict(get_config())["model"]["d_model"]
    128
  """
  if isinstance(config, ml_collections.ConfigDict):
    return json.loads(config.to_json_best_effort(sort_keys=True))
  return json.loads(json.dumps(config, sort_keys=True, default=str))


def sparsity_rules(config: Any) -> list[rules_lib.Rule]:
  """The rules of ``sparsity.rules``, parsed; errors name the key.

  Args:
    config: A run's ``ConfigDict``.

  Returns:
    The ``sparsejax.Rule`` list, first match wins.

  Raises:
    ConfigError: The rules string is malformed (see
      :func:`sparsejax.rules.parse_rules`).

  Example:
    >>> [str(r.pattern) for r in sparsity_rules(get_config())]
    ['2:4']
  """
  try:
    return rules_lib.parse_rules(config.sparsity.rules)
  except ValueError as err:
    raise ConfigError(f"sparsity.rules: {err}") from None


def load_config_file(path: str | os.PathLike, *args: Any
                     ) -> ml_collections.ConfigDict:
  """Calls ``get_config(*args)`` of a config file, as ``--config`` does.

  Config files build on each other with it, e.g. a recipe on its scale:
  ``load_config_file(os.path.join(os.path.dirname(__file__), "gpt_small.py"))``.

  Args:
    path: A Python file defining ``get_config``.
    *args: Passed to ``get_config``.

  Returns:
    The ``ConfigDict`` it returns.

  Raises:
    ConfigError: The file does not exist or has no ``get_config``.

  Example:
    >>> load_config_file(__file__).model.d_model
    128
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ConfigError(f"config file {path!r} does not exist.")
  name = "_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not callable(getattr(module, "get_config", None)):
    raise ConfigError(f"config file {path!r} defines no get_config().")
  return module.get_config(*args)


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
  :func:`sparsejax.pretrain.plan.plan`, still before any compute.

  Args:
    config: A ``ConfigDict`` built from :func:`get_config`.

  Example:
    >>> cfg = get_config()
    >>> validate(cfg)
    >>> cfg.sparsity.decay = "cubic"
    >>> validate(cfg)
    Traceback (most recent call last):
    ...
    sparsejax.pretrain.config.ConfigError: sparsity.decay='cubic'; choose one of ...
  """
  unknown = _unknown_keys(config, get_config())
  if unknown:
    raise ConfigError(f"unknown config key(s): {', '.join(unknown)}. Every "
                      "config starts from sparsejax.pretrain.config.get_config(); "
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
  if s.method != "none":
    sparsity_rules(config)
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
