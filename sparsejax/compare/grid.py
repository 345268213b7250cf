"""The grid of a comparison: arms (method, options, pattern) times seeds.

An arm is a registered training method (``sparsejax.methods.names("train")``)
with optional config options in brackets and one pattern, e.g. ``ste`` at
``2:4`` or ``progressive_nm[structure=,decay=linear,grad=autodiff]`` at
``1:16``. An option is a key of the ``sparsity`` section of the pretraining
config (``decay=exponential``) or any dotted key (``optim.lr=1e-3``); it is
parsed with the pretraining command line's own override parser. The dense
baseline is one more arm, trained for every seed.

Each run's config is the base config with only the method, its options, the
pattern (written into every sparse rule of ``sparsity.rules``, keeping the
rules' regexes) and the seed changed (:func:`run_config`).
"""
from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any, Sequence

import ml_collections

from sparsejax import rules as rules_lib
from sparsejax.pretrain import cli as pretrain_cli
from sparsejax.pretrain import config as config_lib

__all__ = ["DENSE", "GRID_KEYS", "ArmSpec", "default_config", "set_key",
           "run_config"]

DENSE = "dense"
"""The method name of the dense baseline arm (``sparsity.method="none"``)."""

GRID_KEYS = ("sparsity.method", "sparsity.rules", "sparsity.baseline", "seed")
"""Config keys the grid sets per run; ``--set`` and arm options may not."""

ConfigError = config_lib.ConfigError


@dataclasses.dataclass(frozen=True)
class ArmSpec:
  """One arm of the grid: a method, its config options and a pattern.

  Attributes:
    method: A registered training method, or :data:`DENSE`.
    options: ``((key, text), ...)`` config overrides of this arm, in order.
    pattern: The pattern text (``"2:4"``), or ``None`` for the dense arm.

  Example:
    >>> arm = ArmSpec("progressive_nm", (("decay", "exponential"),), "2:4")
    >>> arm.variant, arm.name, arm.slug
    ('progressive_nm[decay=exponential]', 'progressive_nm[decay=exponential] 2:4', 'progressive_nm-decay-exponential_2-4')
  """
  method: str
  options: tuple[tuple[str, str], ...] = ()
  pattern: str | None = None

  @property
  def variant(self) -> str:
    """The method with its options, as written on the command line."""
    if not self.options:
      return self.method
    return f"{self.method}[{','.join(f'{k}={v}' for k, v in self.options)}]"

  @property
  def name(self) -> str:
    """``variant pattern`` (just ``dense`` for the baseline)."""
    return self.variant if self.pattern is None else (
        f"{self.variant} {self.pattern}")

  @property
  def slug(self) -> str:
    """A folder-safe form of :attr:`name`."""
    parts = [self.variant] + ([self.pattern] if self.pattern else [])
    return "_".join(re.sub(r"[^A-Za-z0-9_.]+", "-", p).strip("-")
                    for p in parts)


def default_config() -> ml_collections.ConfigDict:
  """The CPU-sized base config of ``python -m sparsejax.compare``.

  The embedded pretraining default (byte-level GPT on ``pydoc_data``),
  shrunk so that a run takes seconds on one CPU core: one layer of width
  64, 150 steps, validation on 64 windows, no export or plots, one
  checkpoint at the end.

  Returns:
    A ``ConfigDict`` of the pretraining schema.

  Example:
    >>> cfg = default_config()
    >>> cfg.model.d_model, cfg.train.steps
    (64, 150)
  """
  c = config_lib.get_config()
  c.data.seq_len, c.data.batch_size = 32, 16
  c.model.d_model, c.model.n_layers, c.model.n_heads, c.model.d_ff = (
      64, 1, 2, 128)
  c.optim.warmup_steps = 15
  c.train.steps = 150
  c.sparsity.c = 0.01  # linear mask decay: beta reaches 0 in the sparse phase
  c.checkpoint.every = 150
  c.eval.every, c.eval.batch_size, c.eval.max_windows = 150, 16, 64
  c.log_every = 10
  c.outputs.plots = c.outputs.export = False
  return c


def _with_pattern(rules: str, pattern: str) -> str:
  """``rules`` with every sparse rule's pattern replaced by ``pattern``."""
  parts = []
  for part in rules.split(";"):
    regex, _, old = part.strip().rpartition("=")
    if part.strip() and rules_lib.parse_pattern(old) is not None:
      part = f"{regex}={pattern}"
    parts.append(part)
  return ";".join(parts)


def set_key(config: Any, key: str, text: str, where: str) -> None:
  """Sets one override with the pretraining parser; errors name ``where``.

  Args:
    config: The ``ConfigDict`` to change.
    key: A dotted config key.
    text: The value as text.
    where: What the message names (e.g. ``"--set optim.lr=1"``).

  Raises:
    ConfigError: A key the grid sets (:data:`GRID_KEYS`), an unknown key or
      a value of the wrong type.

  Example:
    >>> set_key(default_config(), "seed", "3", "--set seed=3")
    Traceback (most recent call last):
    ...
    sparsejax.pretrain.config.ConfigError: --set seed=3: seed is set by the grid (--methods, --patterns, --seeds); it cannot be overridden.
  """
  if key in GRID_KEYS:
    raise ConfigError(f"{where}: {key} is set by the grid (--methods, "
                      "--patterns, --seeds); it cannot be overridden.")
  try:
    pretrain_cli.set_override(config, key, text)
  except ConfigError as e:
    raise ConfigError(f"{where}: {e}") from None


def run_config(base: Any, arm: ArmSpec, seed: int) -> ml_collections.ConfigDict:
  """The config of one run: ``base`` with the arm's method, options,
  pattern and the seed; checked with the pretraining validation.

  Args:
    base: The base ``ConfigDict`` (not changed).
    arm: The arm.
    seed: The run's seed (data order, initialization, method randomness).

  Returns:
    A new validated ``ConfigDict`` that trains this arm only.

  Raises:
    ConfigError: An option that is unknown, of the wrong type, or makes the
      config invalid (naming the arm and the key).

  Example:
    >>> cfg = run_config(default_config(), ArmSpec("ste", (), "1:16"), 2)
    >>> cfg.sparsity.method, cfg.sparsity.rules.endswith("=1:16"), cfg.seed
    ('ste', True, 2)
  """
  config = copy.deepcopy(base)
  config.seed = seed
  config.sparsity.baseline = False
  if arm.method == DENSE:
    config.sparsity.method = "none"
  else:
    config.sparsity.method = arm.method
    config.sparsity.rules = _with_pattern(base.sparsity.rules, arm.pattern)
  for key, text in arm.options:
    full = key if "." in key else f"sparsity.{key}"
    set_key(config, full, text, f"arm {arm.variant!r}")
  try:
    config_lib.validate(config)
  except ConfigError as e:
    raise ConfigError(f"arm {arm.name!r}: {e}") from None
  return config
