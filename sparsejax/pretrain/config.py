"""The pretraining configuration: its schema (every key, with defaults), checks.

A run is described by one ``ml_collections.ConfigDict``. :func:`get_config`
is the schema: every key a run may set, with the values of the embedded
default run. The recipes in :mod:`sparsejax.pretrain.recipes` (``smoke``,
``gpt_small_srste_2to4``, ...) and config files of your own start from it,
or from another config (:func:`load_config_file`), and change what they need;
:func:`validate` rejects unknown keys and bad values with a message naming
the key, before any compute.

Sparsity rules are one string so that they can be overridden on the command
line; its syntax is :func:`sparsejax.rules.parse_rules`'s, e.g.
``"block_.*/mlp/.*/kernel=1:8;block_.*/attn/.*/kernel=2:4"``.
``activation_sparsity.rules`` has the same syntax over Dense *layer* paths
(``block_0/mlp/fc2``, no ``/kernel``): ``n:m`` keeps ``n`` of every ``m``
input features per token, a float ``s`` the top ``1 - s`` (Q-Sparse); empty
(the default) turns activation sparsity off.
"""
from __future__ import annotations

import importlib.util
import inspect
import json
import os
from typing import Any

import ml_collections
from ml_collections import config_dict

from sparsejax import activations
from sparsejax import rules as rules_lib

__all__ = [
    "ConfigError",
    "ALL_BLOCK_KERNELS",
    "MLP_KERNELS",
    "ATTN_KERNELS",
    "get_config",
    "load_config_file",
    "sparsity_rules",
    "activation_rules",
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
  c.data.source = "pydoc"        # "pydoc", "files" or "array_record"
  c.data.paths = ""              # comma-separated files (or text folders)
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
  # Steps with a non-finite loss, gradient or update are skipped (params,
  # optimizer and sparsity state kept; the step count and data move on);
  # more skips than this stop the run (exit status 3). 0: stop at the first.
  c.train.max_nonfinite_steps = 10

  c.sparsity = ml_collections.ConfigDict()
  c.sparsity.method = "progressive_nm"  # "none" or a registered method name
  c.sparsity.rules = f"{ALL_BLOCK_KERNELS}=2:4"
  c.sparsity.baseline = True      # also train the dense model of this config
  # Progressive N:M: phases as fractions of train.steps.
  c.sparsity.dense_fraction = 0.15
  c.sparsity.finetune_fraction = 0.2
  c.sparsity.structure = "stepwise"   # "", "stepwise" or "geometric"
  c.sparsity.decay = "linear"         # "", "linear" or "exponential"
  # Mask-decay rate per step; None: from the sparse phase's length (beta
  # reaches 0.01 as the fine-tune starts).
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

  # Activation sparsity of chosen Dense layers' inputs (any method, dense
  # too); "": off. See activation_rules.
  c.activation_sparsity = ml_collections.ConfigDict()
  c.activation_sparsity.rules = ""
  c.activation_sparsity.grad = "ste"  # "ste" (Q-Sparse) or "masked"

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


def activation_rules(config: Any) -> list[rules_lib.Rule]:
  """The rules of ``activation_sparsity.rules`` (empty: off); errors name it.

  Args:
    config: A run's ``ConfigDict``.

  Returns:
    The ``sparsejax.Rule`` list over Dense layer paths, first match wins.

  Raises:
    ConfigError: A malformed rules string, or a pattern activation sparsity
      cannot take (see :func:`sparsejax.activations.check_input_pattern`).

  Example:
    >>> cfg = get_config()
    >>> activation_rules(cfg)
    []
    >>> cfg.activation_sparsity.rules = "block_0/mlp/fc2=2:4"
    >>> [str(r.pattern) for r in activation_rules(cfg)]
    ['2:4']
  """
  spec = config.activation_sparsity.rules
  if isinstance(spec, str) and not spec.strip():
    return []
  try:
    rules = rules_lib.parse_rules(spec)
    for rule in rules:
      if rule.pattern is not None:
        activations.check_input_pattern(rule.pattern, path=rule.path)
  except ValueError as err:
    raise ConfigError(f"activation_sparsity.rules: {err}") from None
  return rules


def load_config_file(path: str | os.PathLike, *args: Any
                     ) -> ml_collections.ConfigDict:
  """Calls ``get_config(*args)`` of a config file, as ``--config`` does.

  ``--config FILE:VARIANT`` passes ``VARIANT`` (e.g. ``cpu``, see
  :mod:`sparsejax.pretrain.variants`); ``--config NAME[:VARIANT]`` loads the
  packaged recipe's file (:mod:`sparsejax.pretrain.recipes`).

  Config files of your own build on each other with it (the packaged
  recipes import each other), e.g. a recipe on its scale:
  ``load_config_file(os.path.join(os.path.dirname(__file__), "gpt_small.py"))``.

  Args:
    path: A Python file defining ``get_config``.
    *args: Passed to ``get_config``.

  Returns:
    The ``ConfigDict`` it returns.

  Raises:
    ConfigError: The file does not exist, fails to load, has no
      ``get_config`` or it returns no ``ConfigDict``.

  Example:
    >>> load_config_file(__file__).model.d_model
    128
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ConfigError(f"config file {path!r} does not exist.")
  name = "_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None or spec.loader is None:
    raise ConfigError(f"config file {path!r} is not a Python file.")
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
    if not callable(getattr(module, "get_config", None)):
      raise ConfigError(f"config file {path!r} defines no get_config().")
    if args and not inspect.signature(module.get_config).parameters:
      raise ConfigError(
          f"config file {path!r} takes no variant (its get_config() has no "
          f"argument); drop ':{':'.join(map(str, args))}'.")
    config = module.get_config(*args)
  except ConfigError:
    raise
  except Exception as e:  # a broken file: its error, without a traceback
    raise ConfigError(f"config file {path!r} failed to load: "
                      f"{type(e).__name__}: {e}") from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"config file {path!r}: get_config() must return an "
                      f"ml_collections.ConfigDict; got {type(config).__name__}.")
  return config


def validate(config: Any) -> None:
  """Checks a config's keys, types and values; raises :class:`ConfigError`.

  The checks are :func:`sparsejax.pretrain.validation.validate`'s: unknown
  keys (with the closest valid key), types, then every value's domain.
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
    sparsejax.pretrain.config.ConfigError: sparsity.decay must be one of '', 'linear', 'exponential'; got 'cubic'.
  """
  from sparsejax.pretrain import validation  # it builds on this module
  validation.validate(config)
