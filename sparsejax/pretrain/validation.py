"""The checks of a run's config and workdir, each naming the key it refuses.

:func:`validate` checks every key of a config against the schema
(:func:`sparsejax.pretrain.config.get_config`): unknown keys (with the
closest valid key), types, then the domain of each value (finite learning
rate > 0, integer step counts >= 1, fractions in range, compilable rule
regexes, a registered method). :func:`check_workdir_path` refuses a workdir
that cannot be created or written. Both raise
:class:`~sparsejax.pretrain.config.ConfigError`, before any compute.
"""
from __future__ import annotations

import difflib
import math
import os
import tempfile
from typing import Any, Callable, Iterable

import ml_collections

from sparsejax import _checks
from sparsejax.methods import registry
from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import paths

__all__ = ["OPTIONAL_KEYS", "schema_keys", "closest_key", "unknown_key_error", "check_method",
           "check_workdir_path", "validate"]

ConfigError = config_lib.ConfigError

OPTIONAL_KEYS = ("sparsity.c",)
"""Keys that may be ``None`` (the method's default)."""


def schema_keys(schema: Any = None, prefix: str = "") -> dict[str, Any]:
  """Every leaf key of the schema, dotted, with its default value.

  Args:
    schema: A ``ConfigDict`` (default: :func:`~.config.get_config`).
    prefix: Prepended to every key.

  Returns:
    ``{"optim.lr": 0.003, ...}``.

  Example:
    >>> schema_keys()["optim.lr"]
    0.003
  """
  schema = config_lib.get_config() if schema is None else schema
  out = {}
  for key, value in schema.items():
    if isinstance(value, ml_collections.ConfigDict):
      out.update(schema_keys(value, f"{prefix}{key}."))
    else:
      out[prefix + key] = value
  return out


def closest_key(name: str, keys: Iterable[str] | None = None) -> str | None:
  """The valid key closest to a misspelled ``name`` (``None`` if none is).

  Args:
    name: A dotted key, e.g. ``"optim.lrr"``.
    keys: Valid dotted keys (default: every key and section of the schema).

  Returns:
    The closest key, or ``None``.

  Example:
    >>> closest_key("optim.lrr"), closest_key("zzz")
    ('optim.lr', None)
  """
  if keys is None:
    leaves = list(schema_keys())
    keys = leaves + sorted({k.rpartition(".")[0] for k in leaves} - {""})
  match = difflib.get_close_matches(name, list(keys), n=1, cutoff=0.6)
  return match[0] if match else None


def unknown_key_error(name: str) -> ConfigError:
  """The error of an unknown key, with the closest valid key.

  Args:
    name: The dotted key.

  Returns:
    A :class:`~.config.ConfigError` (to raise).

  Example:
    >>> str(unknown_key_error("optim.lrr"))
    "unknown config key 'optim.lrr'; did you mean 'optim.lr'?"
  """
  near = closest_key(name)
  hint = (f"did you mean {near!r}?" if near else "every key is listed in "
          "sparsejax.pretrain.config.get_config().")
  return ConfigError(f"unknown config key {name!r}; {hint}")


def check_method(method: Any) -> None:
  """Raises unless ``method`` is ``"none"`` or a registered train method.

  Args:
    method: The value of ``sparsity.method``.

  Example:
    >>> check_method("srste")
    >>> check_method("magic")
    Traceback (most recent call last):
    ...
    sparsejax.pretrain.config.ConfigError: sparsity.method='magic'; choose one of ('none', ...).
  """
  choices = ("none",) + tuple(registry.names("train"))
  if method not in choices:
    raise ConfigError(f"sparsity.method={method!r}; choose one of {choices}.")


def check_workdir_path(workdir: str | os.PathLike) -> None:
  """Raises unless ``workdir`` is, or can be created as, a writable folder.

  Nothing is left behind (a probe folder is made and removed at once). A
  path on an object store (``gs://...``) is only refused when it is a file:
  its bucket's permissions show at the first write.

  Args:
    workdir: The ``--workdir`` of a run (local or any ``etils.epath`` path).

  Example:
    >>> import tempfile
    >>> check_workdir_path(os.path.join(tempfile.mkdtemp(), "new", "run"))
    >>> check_workdir_path(__file__)
    Traceback (most recent call last):
    ...
    sparsejax.pretrain.config.ConfigError: --workdir ... is a file, not a folder.
  """
  where = paths.as_path(workdir)
  if where.exists() and not where.is_dir():
    raise ConfigError(f"--workdir {where} is a file, not a folder.")
  if not paths.is_local(where):
    return
  path = parent = os.fspath(where)
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise ConfigError(f"--workdir {path} cannot be created: {parent} is a "
                      "file, not a folder.")
  try:  # a probe folder, removed at once: os.access trusts root too much
    os.rmdir(tempfile.mkdtemp(prefix=".probe-", dir=parent))
  except OSError as e:
    raise ConfigError(f"--workdir {path} cannot be written: {parent} refuses "
                      f"a new folder ({e.strerror or e}).") from None


def _as_config_error(check: Callable[..., Any], *args: Any, **kwargs: Any
                     ) -> Any:
  """Runs a ``sparsejax._checks`` validator; its error as a ConfigError."""
  try:
    return check(*args, **kwargs)
  except ValueError as e:  # ParamTypeError is a ValueError too
    raise ConfigError(str(e)) from None


def _check_types(config: Any, schema: Any, prefix: str = "") -> None:
  """Unknown keys, sections and leaf types against the schema."""
  for key in config.keys():
    name = prefix + key
    if key not in schema:
      raise unknown_key_error(name)
    want, value = schema[key], config[key]
    if isinstance(want, ml_collections.ConfigDict):
      if not isinstance(value, (ml_collections.ConfigDict, dict)):
        raise ConfigError(f"{name} must be a section (keys "
                          f"{', '.join(sorted(want.keys()))}); got {value!r}.")
      _check_types(value, want, name + ".")
      continue
    if value is None and name in OPTIONAL_KEYS:
      continue
    kind = type(want)
    ok = (isinstance(value, kind) and not (kind is int and
                                           isinstance(value, bool)))
    if kind is float:
      ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
      raise ConfigError(f"{name} must be a{'n' if kind is int else ''} "
                        f"{kind.__name__}; got {value!r}.")


def _ints(section: Any, prefix: str, names: Iterable[str], lo: int) -> None:
  for name in names:
    key = f"{prefix}.{name}" if prefix else name
    _as_config_error(_checks.check_int, section[name], key, lo)


def _fractions(section: Any, prefix: str, names: Iterable[str],
               closed: bool = True) -> None:
  for name in names:
    _as_config_error(_checks.check_fraction, section[name], f"{prefix}.{name}",
                     closed=closed)


def _finite_positive(value: Any, name: str) -> None:
  if not (isinstance(value, (int, float)) and math.isfinite(value)
          and value > 0):
    raise ConfigError(f"{name} must be finite and > 0; got {value!r}.")


def _check_data_model(d: Any, m: Any) -> None:
  _as_config_error(_checks.check_choice, d.source, "data.source",
                   ("pydoc", "files", "array_record"))
  if d.source != "pydoc" and not d.paths.strip():
    raise ConfigError(f"data.source={d.source!r} needs data.paths "
                      "(comma-separated text files or folders for 'files', "
                      "ArrayRecord files for 'array_record').")
  if not 0.0 < d.val_fraction < 1.0:
    raise ConfigError(f"data.val_fraction must be in (0, 1); got "
                      f"{d.val_fraction!r}.")
  _ints(d, "data", ("seq_len", "batch_size"), 1)
  _ints(m, "model", ("d_model", "n_layers", "n_heads", "d_ff"), 1)
  if m.d_model % m.n_heads:
    raise ConfigError(f"model.d_model={m.d_model} is not divisible by "
                      f"model.n_heads={m.n_heads}.")
  _as_config_error(_checks.check_choice, m.positions, "model.positions",
                   ("learned", "rotary"))
  _as_config_error(_checks.check_choice, m.dtype, "model.dtype",
                   ("float32", "bfloat16"))
  _fractions(m, "model", ("dropout",), closed=False)


def _check_optim_train(o: Any, t: Any) -> None:
  _finite_positive(o.lr, "optim.lr")
  _ints(t, "train", ("steps",), 1)
  _ints(t, "train", ("max_nonfinite_steps",), 0)
  _ints(o, "optim", ("warmup_steps",), 0)
  if o.warmup_steps >= t.steps:
    raise ConfigError(f"optim.warmup_steps={o.warmup_steps} must be < "
                      f"train.steps={t.steps}.")
  _fractions(o, "optim", ("end_lr_fraction",))
  _fractions(o, "optim", ("b1", "b2"), closed=False)
  for name in ("weight_decay", "clip_norm"):
    _as_config_error(_checks.check_nonnegative, o[name], f"optim.{name}")


def _check_sparsity(config: Any) -> None:
  s, steps = config.sparsity, config.train.steps
  check_method(s.method)
  if s.method != "none":
    config_lib.sparsity_rules(config)  # parses the rules, compiles regexes
  for name, choices in (("structure", ("", "stepwise", "geometric")),
                        ("decay", ("", "linear", "exponential")),
                        ("grad", ("identity", "autodiff")),
                        ("distribution", ("", "uniform", "erk"))):
    _as_config_error(_checks.check_choice, s[name], f"sparsity.{name}",
                     choices)
  _fractions(s, "sparsity", ("dense_fraction", "finetune_fraction",
                             "begin_fraction", "end_fraction",
                             "t_end_fraction", "alpha"))
  _fractions(s, "sparsity", ("target",), closed=False)
  if s.c is not None:
    _finite_positive(s.c, "sparsity.c")
  _as_config_error(_checks.check_nonnegative, s.srste_decay,
                   "sparsity.srste_decay")
  _ints(s, "sparsity", ("frequency", "delta_t"), 1)
  if s.method == "progressive_nm":
    dense = int(round(s.dense_fraction * steps))
    fine = int(round(s.finetune_fraction * steps))
    if dense + fine >= steps:
      raise ConfigError(
          f"sparsity.dense_fraction + sparsity.finetune_fraction leave no "
          f"sparse phase in {steps} steps ({dense} dense + {fine} "
          "fine-tune).")
  if s.method == "gradual_magnitude" and s.end_fraction <= s.begin_fraction:
    raise ConfigError("sparsity.end_fraction must be > begin_fraction.")


def _check_activation_sparsity(config: Any) -> None:
  a = config.activation_sparsity
  _as_config_error(_checks.check_choice, a.grad, "activation_sparsity.grad",
                   ("ste", "masked"))
  if config_lib.activation_rules(config) and config.model.scan_layers:
    raise ConfigError(
        "activation_sparsity.rules needs model.scan_layers=False: the "
        "achieved sparsity is logged per layer, and scanned blocks share one "
        "layer path.")


def _check_run(config: Any) -> None:
  for name in ("data", "fsdp", "tensor"):
    v = config.mesh[name]
    if v != -1 and v < 1:
      raise ConfigError(f"mesh.{name} must be >= 1 (or -1 for 'the rest' on "
                        f"one axis); got {v}.")
  if sum(config.mesh[n] == -1 for n in ("data", "fsdp", "tensor")) > 1:
    raise ConfigError("at most one of mesh.data, mesh.fsdp, mesh.tensor may "
                      "be -1.")
  _ints(config.checkpoint, "checkpoint", ("every", "keep"), 1)
  _ints(config.eval, "eval", ("every", "batch_size"), 1)
  _ints(config.eval, "eval", ("max_windows",), 0)
  _ints(config, "", ("log_every",), 1)
  _ints(config, "", ("seed",), 0)
  if config.seed >= 2**32:
    raise ConfigError(f"seed must be < 2**32 (the data shuffle's range); got "
                      f"{config.seed}.")


def validate(config: Any) -> None:
  """Checks a config's keys, types and values; raises ``ConfigError``.

  Shape checks that need the model (an N:M pattern that does not divide a
  layer, a mesh that does not divide a dimension) come later, in
  :func:`sparsejax.pretrain.plan.plan`, still before any compute.

  Args:
    config: A ``ConfigDict`` built from :func:`~.config.get_config`.

  Example:
    >>> cfg = config_lib.get_config()
    >>> validate(cfg)
    >>> cfg.optim.lr = float("inf")
    >>> validate(cfg)
    Traceback (most recent call last):
    ...
    sparsejax.pretrain.config.ConfigError: optim.lr must be finite and > 0; got inf.
  """
  _check_types(config, config_lib.get_config())
  _check_data_model(config.data, config.model)
  _check_optim_train(config.optim, config.train)
  _check_sparsity(config)
  _check_activation_sparsity(config)
  _check_run(config)
