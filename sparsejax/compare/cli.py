"""The command line of ``python -m sparsejax.compare``, parsed and checked.

Arguments::

  --methods A,B,...     registered training methods, each optionally with
                        config options: progressive_nm[decay=exponential]
                        (default: ste,srste,sste,progressive_nm)
  --patterns P,...      patterns written into every sparse rule of
                        sparsity.rules (default: 2:4)
  --seeds K,...         seeds; every arm and the dense baseline run once per
                        seed (default: 0,1)
  --config RECIPE|FILE[:VARIANT]
                        the base pretraining config, a packaged recipe or a
                        config file as for python -m sparsejax.pretrain
                        (default: a CPU-sized config,
                        sparsejax.compare.grid.default_config)
  --set KEY=VALUE       override a key of the base config (repeatable)
  --out DIR             output folder (default: compare_out)
  --compile-cache DIR   JAX's persistent compilation cache, shared by the
                        runs (default: OUT/jax_cache; "none": off)

Every mistake is a :class:`~sparsejax.pretrain.config.ConfigError` naming
the option, which the command prints as one ``error:`` line (exit status 2).
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import re
from typing import Any, Sequence

from sparsejax import rules as rules_lib
from sparsejax.compare import grid as grid_lib
from sparsejax.methods import registry
from sparsejax.pretrain import cli as pretrain_cli
from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import validation

__all__ = ["DEFAULT_METHODS", "Request", "parse_methods", "parse_patterns",
           "parse_seeds", "parse_args"]

DEFAULT_METHODS = "ste,srste,sste,progressive_nm"
"""The methods of the default grid."""

ConfigError = config_lib.ConfigError


@dataclasses.dataclass
class Request:
  """A parsed, checked command line.

  Attributes:
    base: The base ``ConfigDict`` (config file and ``--set`` applied).
    arms: The sparse arms (methods x patterns).
    seeds: The seeds.
    out: The output folder.
    compile_cache: The compilation cache folder, or ``None``.
    argv: The arguments as given.
    help: ``--help`` was given (nothing else is set then).
  """
  base: Any
  arms: list[grid_lib.ArmSpec]
  seeds: list[int]
  out: str
  compile_cache: str | None
  argv: list[str]
  help: bool = False


class _Parser(argparse.ArgumentParser):
  """An ``ArgumentParser`` that raises ``ConfigError`` instead of exiting."""

  def error(self, message: str) -> None:  # type: ignore[override]
    raise ConfigError(f"{message}; {self.format_usage().strip()}")


def _parser() -> _Parser:
  p = _Parser(prog="python -m sparsejax.compare", add_help=False,
              allow_abbrev=False)
  p.add_argument("-h", "--help", action="store_true")
  p.add_argument("--methods", default=DEFAULT_METHODS)
  p.add_argument("--patterns", default="2:4")
  p.add_argument("--seeds", default="0,1")
  p.add_argument("--config", default=None)
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  p.add_argument("--out", default="compare_out")
  p.add_argument("--compile-cache", default=None)
  return p


def _split_top(text: str) -> list[str]:
  """``text`` split at commas outside brackets, items stripped."""
  items, depth, current = [], 0, ""
  for ch in text:
    depth += (ch == "[") - (ch == "]")
    if ch == "," and depth == 0:
      items.append(current.strip())
      current = ""
    else:
      current += ch
  return items + [current.strip()]


def _unknown_method(name: str) -> ConfigError:
  known = registry.names("train")
  near = difflib.get_close_matches(name, known, n=1)
  hint = f"did you mean {near[0]!r}? " if near else ""
  return ConfigError(f"--methods: {name!r} is not a registered training "
                     f"method; {hint}registered: {', '.join(known)}.")


def _parse_variant(item: str) -> tuple[str, tuple[tuple[str, str], ...]]:
  """``"name[k=v,...]"`` as ``(name, ((k, v), ...))``."""
  match = re.fullmatch(r"([^\[\]]+)(?:\[(.*)\])?", item)
  if not item or match is None:
    raise ConfigError(f"--methods: bad arm {item!r}; expected NAME or "
                      "NAME[KEY=VALUE,...], e.g. progressive_nm[decay=linear].")
  name, body = match.group(1).strip(), match.group(2)
  if name not in registry.names("train"):
    raise _unknown_method(name)
  options = []
  for part in [] if body is None else _split_top(body):
    key, eq, value = part.partition("=")
    if not eq or not key.strip():
      raise ConfigError(f"--methods: option {part!r} of {item!r} must be "
                        "KEY=VALUE (a sparsity key or a dotted config key).")
    options.append((key.strip(), value.strip()))
  return name, tuple(options)


def parse_methods(text: str) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
  """Parses ``--methods``: registered names, each with optional options.

  Args:
    text: Comma-separated arms, e.g. ``"ste,progressive_nm[decay=linear]"``.

  Returns:
    ``[(method, ((key, text), ...)), ...]`` in the given order.

  Raises:
    ConfigError: An empty list, a name that is not registered (with the
      closest registered one), a malformed option or a repeated arm.

  Example:
    >>> parse_methods("ste, progressive_nm[decay=exponential,grad=autodiff]")
    [('ste', ()), ('progressive_nm', (('decay', 'exponential'), ('grad', 'autodiff')))]
    >>> parse_methods("srtse")
    Traceback (most recent call last):
    ...
    sparsejax.pretrain.config.ConfigError: --methods: 'srtse' is not a registered training method; did you mean 'srste'? registered: ...
  """
  items = [i for i in _split_top(text) if i]
  if not items:
    raise ConfigError("--methods is empty: name at least one method, e.g. "
                      f"--methods ste,srste (registered: "
                      f"{', '.join(registry.names('train'))}).")
  out = [_parse_variant(item) for item in items]
  if len(set(out)) < len(out):
    raise ConfigError(f"--methods {text!r} names an arm twice.")
  return out


def parse_patterns(text: str) -> list[str]:
  """Parses ``--patterns``: N:M (``2:4``) or unstructured (``0.9``) patterns.

  Args:
    text: Comma-separated patterns.

  Returns:
    The patterns in canonical text (``"2:4"``).

  Raises:
    ConfigError: An empty list, a pattern that does not parse, ``dense``
      (the baseline is always trained) or a repeated pattern.

  Example:
    >>> parse_patterns("2:4, 1:16")
    ['2:4', '1:16']
    >>> parse_patterns("2/4")
    Traceback (most recent call last):
    ...
    sparsejax.pretrain.config.ConfigError: --patterns: bad pattern '2/4': expected 'n:m', a sparsity in [0, 1) or 'dense'.
  """
  items = [i.strip() for i in text.split(",") if i.strip()]
  if not items:
    raise ConfigError("--patterns is empty: give at least one, e.g. "
                      "--patterns 2:4,1:16.")
  out = []
  for item in items:
    try:
      pattern = rules_lib.parse_pattern(item)
    except ValueError as e:
      raise ConfigError(f"--patterns: {e}") from None
    if pattern is None:
      raise ConfigError("--patterns: 'dense' is not a sparse pattern; the "
                        "dense baseline is trained for every seed anyway.")
    out.append(str(pattern))
  if len(set(out)) < len(out):
    raise ConfigError(f"--patterns {text!r} names a pattern twice.")
  return out


def parse_seeds(text: str) -> list[int]:
  """Parses ``--seeds``: distinct non-negative ints.

  Args:
    text: Comma-separated seeds, e.g. ``"0,1,2"``.

  Returns:
    The seeds in the given order.

  Raises:
    ConfigError: An empty list, a seed that is not a non-negative int, or
      a repeated seed.

  Example:
    >>> parse_seeds("0, 1,2")
    [0, 1, 2]
    >>> parse_seeds("0,1.5")
    Traceback (most recent call last):
    ...
    sparsejax.pretrain.config.ConfigError: --seeds: '1.5' is not a non-negative int.
  """
  items = [i.strip() for i in text.split(",") if i.strip()]
  if not items:
    raise ConfigError("--seeds is empty: give at least one, e.g. --seeds 0,1.")
  for item in items:
    if not item.isdigit():
      raise ConfigError(f"--seeds: {item!r} is not a non-negative int.")
  seeds = [int(i) for i in items]
  if len(set(seeds)) < len(seeds):
    raise ConfigError(f"--seeds {text!r} names a seed twice.")
  return seeds


def parse_args(argv: Sequence[str]) -> Request:
  """Parses and checks the command line (without the program name).

  The base config is loaded and overridden, the grid parsed and every run's
  config validated; nothing is computed or written.

  Args:
    argv: The arguments, e.g. ``["--methods", "ste", "--seeds", "0,1"]``.

  Returns:
    The :class:`Request`.

  Raises:
    ConfigError: Any mistake, naming the option.

  Example:
    >>> r = parse_args(["--methods", "ste,srste", "--patterns", "2:4,1:16"])
    >>> [a.name for a in r.arms], r.seeds
    (['ste 2:4', 'ste 1:16', 'srste 2:4', 'srste 1:16'], [0, 1])
    >>> parse_args(["--set", "optim.lrr=1"])
    Traceback (most recent call last):
    ...
    sparsejax.pretrain.config.ConfigError: --set optim.lrr=1: unknown config key 'optim.lrr'; did you mean 'optim.lr'?
  """
  args = _parser().parse_args(list(argv))
  if args.help:
    return Request(None, [], [], "", None, list(argv), help=True)
  methods = parse_methods(args.methods)
  patterns = parse_patterns(args.patterns)
  seeds = parse_seeds(args.seeds)
  base = (grid_lib.default_config() if args.config is None
          else config_lib.load_config_file(
              *pretrain_cli.config_source(args.config)))
  for item in args.set:
    key, eq, value = item.partition("=")
    if not eq or not key.strip():
      raise ConfigError(f"--set {item!r} must be KEY=VALUE, e.g. "
                        "--set train.steps=300.")
    grid_lib.set_key(base, key.strip().removeprefix("config."), value,
                     f"--set {item}")
  try:
    config_lib.validate(base)
  except ConfigError as e:
    raise ConfigError(f"the base config: {e}") from None
  if not args.out:
    raise ConfigError("--out must not be empty.")
  try:
    validation.check_workdir_path(args.out)
  except ConfigError as e:
    raise ConfigError(str(e).replace("--workdir", "--out", 1)) from None
  arms = [grid_lib.ArmSpec(method, options, pattern)
          for method, options in methods for pattern in patterns]
  cache = args.compile_cache
  if cache is None:
    cache = os.path.join(args.out, "jax_cache")
  elif cache.lower() == "none":
    cache = None
  elif not cache:
    raise ConfigError("--compile-cache must be a folder or 'none'.")
  return Request(base, arms, seeds, args.out, cache, list(argv))
