"""The command line of ``python -m sparsejax.compare``, parsed and checked.

Arguments::

  --methods A,B,...     registered training methods, each optionally with
                        config options: progressive_nm[decay=exponential]
                        (default: ste,srste,sste,progressive_nm)
  --patterns P,...      patterns written into every sparse rule of
                        sparsity.rules (default: 2:4)
  --seeds K,...         seeds; every arm and the dense baseline run once per
                        seed (default: 0,1)
  --config FILE         the base pretraining config (default: a CPU-sized
                        config, sparsejax.compare.grid.default_config)
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
import os
from typing import Any, Sequence

from sparsejax.compare import grid as grid_lib
from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import validation

__all__ = ["DEFAULT_METHODS", "Request", "parse_args"]

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
  methods = grid_lib.parse_methods(args.methods)
  patterns = grid_lib.parse_patterns(args.patterns)
  seeds = grid_lib.parse_seeds(args.seeds)
  base = (grid_lib.default_config() if args.config is None
          else config_lib.load_config_file(args.config))
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
