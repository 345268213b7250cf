"""The command line of ``python -m sparsejax.pretrain``, parsed and checked.

Arguments::

  --config RECIPE[:VARIANT] or FILE[:VARIANT]
                         a packaged recipe by name (smoke, srste,
                         gpt_small_rigl_90, ...: sparsejax.pretrain.recipes)
                         or a Python file with get_config() (default: the
                         embedded default, sparsejax/pretrain/config.py);
                         NAME:cpu is the recipe sized for a 2-core CPU
  --config.KEY=VALUE     override one key (e.g. --config.optim.lr=1e-3)
  --workdir DIR          output folder; a compatible run there is resumed
  --verbosity N          absl logging level (default: warnings only)

Each option also takes its value as the next argument. :func:`parse_args`
turns them into a validated config, checking everything that can be checked
without the model (:func:`sparsejax.pretrain.validation.validate`, the
workdir); every mistake is a :class:`~sparsejax.pretrain.config.ConfigError`
naming the option or key, which the command prints as one ``error:`` line.
"""
from __future__ import annotations

import ast
import dataclasses
import datetime
import os
from typing import Any, Sequence

import ml_collections

from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import recipes
from sparsejax.pretrain import validation

__all__ = ["DEFAULT_CONFIG", "USAGE", "Args", "set_override", "split_variant",
           "config_source", "parse_args"]

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "config.py")
"""Path of the embedded default config (used when no ``--config``)."""

USAGE = ("usage: python -m sparsejax.pretrain "
         "[--config RECIPE|FILE[:VARIANT]] [--config.KEY=VALUE ...] "
         "[--workdir DIR] [--verbosity N]")

_OPTIONS = ("--config", "--workdir", "--verbosity")


@dataclasses.dataclass
class Args:
  """A parsed command line.

  Attributes:
    config: The validated ``ConfigDict``.
    workdir: The output folder (a new one under ``runs/`` if not given).
    verbosity: The ``--verbosity`` level, or ``None``.
    help: ``--help`` was given (nothing else is checked then).
  """
  config: Any
  workdir: str
  verbosity: int | None = None
  help: bool = False


def _parse_value(text: str, current: Any, key: str) -> Any:
  """``text`` as the type of the key's current value."""
  if text.lower() == "none" and key in validation.OPTIONAL_KEYS:
    return None
  if isinstance(current, bool):
    words = {"true": True, "1": True, "false": False, "0": False}
    if text.lower() not in words:
      raise config_lib.ConfigError(
          f"--config.{key} must be true or false; got {text!r}.")
    return words[text.lower()]
  try:
    if isinstance(current, int):
      return int(text)
    if isinstance(current, float):
      return float(text)
  except ValueError:
    kind = "an int" if isinstance(current, int) else "a number"
    raise config_lib.ConfigError(
        f"--config.{key} must be {kind}; got {text!r}.") from None
  if isinstance(current, str):
    return text
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def set_override(config: Any, key: str, text: str) -> None:
  """Sets ``--config.KEY=TEXT`` on ``config``, parsed as the key's type.

  Args:
    config: The ``ConfigDict`` to change.
    key: The dotted key, e.g. ``"optim.lr"``.
    text: The value as given on the command line.

  Raises:
    ConfigError: An unknown key (with the closest valid key), a section
      given a value, or a value of the wrong type.

  Example:
    >>> cfg = config_lib.get_config()
    >>> set_override(cfg, "optim.lr", "1e-3")
    >>> cfg.optim.lr
    0.001
    >>> set_override(cfg, "optim.lrr", "1e-3")
    Traceback (most recent call last):
    ...
    sparsejax.pretrain.config.ConfigError: unknown config key 'optim.lrr'; did you mean 'optim.lr'?
  """
  *parents, leaf = key.split(".")
  node = config
  for i, part in enumerate(parents):
    child = node.get(part) if isinstance(node, ml_collections.ConfigDict) \
        else None
    if not isinstance(child, ml_collections.ConfigDict):
      raise validation.unknown_key_error(".".join(parents[:i + 1] + [leaf])
                                         if child is None else key)
    node = child
  if leaf not in node:
    raise validation.unknown_key_error(key)
  current = node[leaf]
  if isinstance(current, ml_collections.ConfigDict):
    raise config_lib.ConfigError(
        f"--config.{key} is a section; set one of its keys, e.g. "
        f"--config.{key}.{sorted(current.keys())[0]}=...")
  value = _parse_value(text, current, key)
  try:
    node[leaf] = value
  except TypeError as e:
    raise config_lib.ConfigError(
        f"--config.{key}={text!r} has the wrong type: {e}") from None


def _split(argv: Sequence[str]) -> list[tuple[str, str | None]]:
  """``[(option, value)]`` from ``--opt=value`` or ``--opt value``."""
  out, i = [], 0
  while i < len(argv):
    arg = argv[i]
    if arg in ("-h", "--help", "--helpshort", "--helpfull"):
      out.append(("--help", None))
      i += 1
      continue
    if not arg.startswith("--"):
      raise config_lib.ConfigError(
          f"unexpected argument {arg!r}; {USAGE}.")
    name, eq, value = arg.partition("=")
    if not eq:
      if i + 1 >= len(argv):
        raise config_lib.ConfigError(f"{name} needs a value; {USAGE}.")
      value, i = argv[i + 1], i + 1
    out.append((name, value))
    i += 1
  return out


def help_text() -> str:
  """What ``--help`` prints: usage, what the default job does, the options.

  The default job's description (and its measured figures) is the one of
  :mod:`sparsejax.pretrain`, so ``--help`` and the package docs agree.

  Example:
    >>> help_text().startswith(USAGE)
    True
  """
  import sparsejax.pretrain as package
  overview = (package.__doc__ or "").split("\nConfigs\n", 1)[0]
  overview = overview.split("\n\n", 1)[-1].strip()
  return f"{USAGE}\n\n{overview}\n\n{__doc__ or ''}"


def split_variant(spec: str) -> tuple[str, ...]:
  """``FILE`` or ``FILE:VARIANT`` -> ``(FILE,)`` or ``(FILE, VARIANT)``.

  ``FILE`` may also be a recipe name; an existing file is never split.

  Example:
    >>> split_variant("my_recipes/rigl.py:cpu")
    ('my_recipes/rigl.py', 'cpu')
    >>> split_variant("smoke")
    ('smoke',)
  """
  head, sep, tail = spec.rpartition(":")
  if not sep or not head or os.sep in tail or "/" in tail or os.path.isfile(
      spec):
    return (spec,)
  return head, tail


def _is_recipe_name(head: str) -> bool:
  """``head`` names a packaged recipe rather than a file."""
  return not (os.path.isfile(head) or "/" in head or os.sep in head
              or head.endswith(".py"))


def config_source(spec: str) -> tuple[str, ...]:
  """``--config``'s value -> ``(FILE,)`` or ``(FILE, VARIANT)`` to load.

  A recipe name (``smoke``, ``smoke:cpu``) becomes the packaged recipe's
  file (:mod:`sparsejax.pretrain.recipes`); a path (anything with a ``/``,
  a ``.py`` ending or an existing file) is kept.

  Args:
    spec: ``RECIPE``, ``RECIPE:VARIANT``, ``FILE`` or ``FILE:VARIANT``.

  Returns:
    The arguments of :func:`sparsejax.pretrain.config.load_config_file`.

  Raises:
    ConfigError: An empty value, an unknown recipe name (the message lists
      the recipes), or a missing ``.py`` file named like a recipe (the
      message names it).

  Example:
    >>> path, variant = config_source("smoke:cpu")
    >>> os.path.relpath(path, os.path.dirname(recipes.__file__)), variant
    ('smoke.py', 'cpu')
    >>> config_source("my_recipes/rigl.py:cpu")
    ('my_recipes/rigl.py', 'cpu')
    >>> config_source("configs/smoke.py")
    Traceback (most recent call last):
    ...
    sparsejax.pretrain.config.ConfigError: config file 'configs/smoke.py' does not exist; the packaged recipe of that name is --config smoke.
  """
  head, *variant = split_variant(spec)
  if not head.strip():
    raise config_lib.ConfigError(
        f"--config needs a recipe name or a file; got {spec!r}.")
  if _is_recipe_name(head):
    return (recipes.recipe_path(head), *variant)
  stem, ext = os.path.splitext(os.path.basename(head))
  if ext == ".py" and not os.path.isfile(head) and stem in recipes.names():
    raise config_lib.ConfigError(
        f"config file {head!r} does not exist; the packaged recipe of that "
        f"name is --config {stem}.")
  return (head, *variant)


def parse_args(argv: Sequence[str]) -> Args:
  """Parses and checks the command line (without the program name).

  The config file is loaded, the overrides applied in order, the config
  validated and the workdir checked; nothing is written.

  Args:
    argv: The arguments, e.g. ``["--config", "smoke:cpu"]``.

  Returns:
    The :class:`Args`.

  Raises:
    ConfigError: Any mistake, naming the option or key.

  Example:
    >>> parse_args(["--config.train.steps=80"]).config.train.steps
    80
    >>> parse_args(["--config.optim.lr=inf"])
    Traceback (most recent call last):
    ...
    sparsejax.pretrain.config.ConfigError: optim.lr must be finite and > 0; got inf.
  """
  pairs = _split(argv)
  if any(name == "--help" for name, _ in pairs):
    return Args(config=None, workdir="", help=True)
  path, workdir, verbosity, overrides = DEFAULT_CONFIG, None, None, []
  for name, value in pairs:
    if name == "--config":
      path = value
    elif name == "--workdir":
      if not value:
        raise config_lib.ConfigError("--workdir must not be empty.")
      workdir = value
    elif name == "--verbosity":
      try:
        verbosity = int(value)
      except ValueError:
        raise config_lib.ConfigError(
            f"--verbosity must be an int; got {value!r}.") from None
    elif name.startswith("--config."):
      overrides.append((name[len("--config."):], value))
    else:
      near = validation.closest_key(name, _OPTIONS)
      raise config_lib.ConfigError(
          f"unknown option {name!r}" +
          (f"; did you mean {near!r}?" if near else f"; {USAGE}."))
  config = config_lib.load_config_file(*config_source(path))
  for key, value in overrides:
    set_override(config, key, value)
  validation.validate(config)
  if workdir is None:
    workdir = os.path.join("runs", datetime.datetime.now().strftime(
        "pretrain-%Y%m%d-%H%M%S"))
  validation.check_workdir_path(workdir)
  return Args(config=config, workdir=workdir, verbosity=verbosity)
