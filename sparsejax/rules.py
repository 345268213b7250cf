"""Rules: which leaves of a params pytree get which pattern.

A leaf is named by its '/'-joined path (`params/Dense_0/kernel`, `layers/0/w`,
`block/mlp/fc1/kernel` for a Flax NNX `State`). Rules are tried in order; the
first whose regex matches the path (`re.fullmatch`) *and* accepts the leaf
wins. A leaf no rule accepts stays dense. Rules that accepted nothing are reported, because
a typo in a regex is the most common way for sparsity to be silently missing.

By default a rule skips 1-D leaves (biases, norm scales) and embeddings
(paths containing "embed"); say otherwise with `min_ndim` / `exclude`.

Rules can also be written as one string, e.g. on a command line or in a
config file (`parse_rules`): `"REGEX=PATTERN;REGEX=PATTERN"` where `PATTERN`
is `n:m` (N:M along the contraction axis), a float sparsity (unstructured) or
`dense`, e.g. `"block_.*/mlp/.*/kernel=1:8;block_.*/attn/.*/kernel=2:4"`.
"""

import dataclasses
import re
from typing import Any, Mapping, Sequence
import warnings

import jax

from sparsejax import _checks
from sparsejax.patterns import NM
from sparsejax.patterns import Pattern
from sparsejax.patterns import Unstructured

_WRAPPER_ATTRS = ("value", "raw_value")


def _key_name(key):
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def path_str(keypath: Sequence[Any]) -> str:
  """Joins a JAX key path into a '/' string.

  A trailing `.value` (the array inside a Flax NNX `Variable`) is dropped so a
  `State` leaf is named like the param it holds.

  >>> tree = {"dense": {"kernel": 1}, "layers": [2]}
  >>> [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
  ['dense/kernel', 'layers/0']
  """
  keys = list(keypath)
  if keys and isinstance(keys[-1], jax.tree_util.GetAttrKey) and (
      keys[-1].name in _WRAPPER_ATTRS) and len(keys) > 1:
    keys = keys[:-1]
  return "/".join(_key_name(k) for k in keys)


def named_leaves(tree: Any) -> list[tuple[str, Any]]:
  """Returns `[(path, leaf), ...]` in `jax.tree.leaves` order.

  >>> named_leaves({"a": {"b": 1}, "c": 2})
  [('a/b', 1), ('c', 2)]
  """
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return [(path_str(p), leaf) for p, leaf in flat]


def param_of(path: str, shape: Sequence[int],
             param_shapes: Mapping[str, Sequence[int]]) -> str | None:
  """The param a state leaf belongs to: a path suffix and the same shape.

  Optimizer states nest param-shaped trees (adam's `mu`, a momentum trace,
  `multi_transform`'s inner states) under extra keys; a leaf belongs to the
  param whose path ends its own path (at a '/' boundary) and whose shape it
  has. `param_shapes` maps param paths to shapes.

  >>> param_of("0/mu/fc/kernel", (4, 2), {"fc/kernel": (4, 2), "fc/bias": (2,)})
  'fc/kernel'
  >>> param_of("0/count", (), {"fc/kernel": (4, 2)}) is None
  True
  """
  best = None
  for param_path, param_shape in param_shapes.items():
    if tuple(shape) != tuple(param_shape):
      continue
    if path == param_path or path.endswith("/" + param_path) or not param_path:
      if best is None or len(param_path) > len(best):
        best = param_path
  return best


@dataclasses.dataclass(frozen=True)
class Rule:
  """Assigns `pattern` to every leaf whose path fully matches `path`.

  Args:
    path: a regex, matched with `re.fullmatch` against the '/'-joined path.
    pattern: the pattern to apply, or `None` to keep matching leaves dense
      (useful ahead of a broad rule: first match wins).
    min_ndim: leaves with fewer dims are skipped (default 2: biases and norm
      scales stay dense).
    exclude: a regex; matching paths are skipped (default: embeddings).

  >>> from sparsejax.patterns import NM
  >>> rule = Rule(r".*mlp.*kernel", NM(2, 4))
  >>> rule.accepts("block_0/mlp/fc1/kernel", (64, 256))
  True
  >>> rule.accepts("block_0/mlp/fc1/bias", (256,))
  False
  """

  path: str
  pattern: Pattern | None
  min_ndim: int = 2
  exclude: str | None = r"(?i).*embed.*"

  def __post_init__(self):
    for field in ("path", "exclude"):
      value = getattr(self, field)
      if value is None and field == "exclude":
        continue
      if not isinstance(value, str):
        raise _checks.ParamTypeError(
            f"Rule.{field} must be a regex string; got {value!r}.")
      try:
        re.compile(value)
      except re.error as err:
        raise ValueError(
            f"Rule.{field} {value!r} is not a valid regex: {err}.") from None
    if self.pattern is not None and not isinstance(self.pattern, Pattern):
      raise _checks.ParamTypeError(
          f"Rule({self.path!r}).pattern must be a sparsejax pattern or None; "
          f"got {self.pattern!r}."
          + (" Parse a pattern string with sj.rules.parse_pattern."
             if isinstance(self.pattern, str) else ""))
    _checks.check_int(self.min_ndim, f"Rule({self.path!r}).min_ndim", 0)

  def accepts(self, path: str, shape: Sequence[int]) -> bool:
    """Whether this rule applies to a leaf with this path and shape."""
    if re.fullmatch(self.path, path) is None:
      return False
    if len(shape) < self.min_ndim:
      return False
    return self.exclude is None or re.fullmatch(self.exclude, path) is None


def as_rules(rules: Any, name: str = "rules") -> tuple["Rule", ...]:
  """`rules` as a tuple of `Rule`s: a list of them, one `Rule`, or a bare
  pattern (shorthand for `Rule(".*", pattern)`).

  Raises:
    ParamTypeError: (a `TypeError`) naming `name`, and the position of a bad
      entry, for anything else (a rule string says to use `parse_rules`).

  >>> as_rules(NM(2, 4))[0].path
  '.*'
  >>> as_rules([Rule(".*", NM(2, 4)), "2:4"])
  Traceback (most recent call last):
  ...
  sparsejax._checks.ParamTypeError: rules[1] must be a sparsejax Rule; got the string '2:4'. Parse a rule string with sj.parse_rules('REGEX=PATTERN').
  """
  hint = " Parse a rule string with sj.parse_rules('REGEX=PATTERN')."
  if isinstance(rules, Rule):
    return (rules,)
  if isinstance(rules, Pattern):
    return (Rule(".*", rules),)
  if isinstance(rules, (str, Mapping)) or hasattr(rules, "shape") or not (
      hasattr(rules, "__iter__")):
    shown = (f"the string {rules!r}" if isinstance(rules, str) else
             f"{rules!r}")
    raise _checks.ParamTypeError(
        f"{name} must be sparsejax Rules, one Rule or a pattern (e.g. "
        f"sj.NM(2, 4)); got {shown}."
        + (hint if isinstance(rules, str) else ""))
  rules = tuple(rules)
  for i, rule in enumerate(rules):
    if not isinstance(rule, Rule):
      shown = (f"the string {rule!r}" if isinstance(rule, str) else
               f"{rule!r}")
      raise _checks.ParamTypeError(
          f"{name}[{i}] must be a sparsejax Rule; got {shown}."
          + (hint if isinstance(rule, str) else
             " Wrap a pattern as Rule(REGEX, pattern)."
             if isinstance(rule, Pattern) else ""))
  return rules


def assign(tree: Any, rules: Any) -> dict[str, "Rule | None"]:
  """Maps every leaf path to the rule that applies to it (or None).

  `rules` may be a list of `Rule`s, one `Rule`, or a bare pattern (shorthand
  for `Rule(".*", pattern)`). The result is a dict in leaf order.

  >>> from sparsejax.patterns import NM
  >>> params = {"fc": {"kernel": jnp.ones((8, 4)), "bias": jnp.ones(4)}}
  >>> {p: str(r.pattern) if r else None for p, r in assign(params, NM(2, 4)).items()}
  {'fc/bias': None, 'fc/kernel': '2:4'}
  """
  rules = as_rules(rules)
  out = {}
  for path, leaf in named_leaves(tree):
    shape = getattr(leaf, "shape", ())
    out[path] = next((r for r in rules if r.accepts(path, shape)), None)
  return out


def unused_rules(tree: Any, rules: Any) -> list["Rule"]:
  """The rules that apply to no leaf of `tree` (most often a regex typo).

  >>> from sparsejax.patterns import NM
  >>> params = {"fc": {"kernel": jnp.ones((8, 4))}}
  >>> [r.path for r in unused_rules(params, [Rule(".*kernal", NM(2, 4))])]
  ['.*kernal']
  """
  rules = as_rules(rules)
  used = {id(r) for r in assign(tree, rules).values() if r is not None}
  return [r for r in rules if id(r) not in used]


def report_unused(tree: Any, rules: Any, on_unused: str) -> None:
  """Warns about (or raises on) unused rules; `on_unused` is warn|error|ignore."""
  _checks.check_choice(on_unused, "on_unused", ("warn", "error", "ignore"))
  if on_unused == "ignore":
    return
  unused = unused_rules(tree, rules)
  if not unused:
    return
  leaves = named_leaves(tree)
  paths = [path for path, _ in leaves]
  shown = ", ".join(paths[:8]) + (" ..." if len(paths) > 8 else "")
  reasons = "".join(_why_unused(rule, leaves) for rule in unused)
  message = (f"{len(unused)} sparsity rule(s) matched no leaf: "
             f"{[r.path for r in unused]}.{reasons} Leaf paths look like: "
             f"{shown}")
  if on_unused == "error":
    raise ValueError(message)
  warnings.warn(message, UserWarning, stacklevel=3)


def _why_unused(rule: "Rule", leaves: list[tuple[str, Any]]) -> str:
  """Names the default exclusions that made a rule whose regex matches miss.

  Empty when the regex itself matched no path (a typo) or the matching
  leaves were all taken by earlier rules.
  """
  matched = [(p, getattr(x, "shape", ())) for p, x in leaves
             if re.fullmatch(rule.path, p) is not None]
  if not matched:
    return ""
  low = [p for p, shape in matched if len(shape) < rule.min_ndim]
  excluded = [p for p, shape in matched if len(shape) >= rule.min_ndim
              and rule.exclude is not None
              and re.fullmatch(rule.exclude, p) is not None]
  parts = []
  if low:
    parts.append(f"min_ndim={rule.min_ndim} excluded {low[:4]} (fewer "
                 f"dims; pass Rule(..., min_ndim=1) to include 1-D leaves)")
  if excluded:
    parts.append(f"exclude={rule.exclude!r} excluded {excluded[:4]} (the "
                 "default skips embeddings; pass Rule(..., exclude=None))")
  if not parts:
    return (f" Rule {rule.path!r} matches {[p for p, _ in matched][:4]}, "
            "but earlier rules took them (first match wins).")
  return f" Rule {rule.path!r}: " + "; ".join(parts) + "."


def parse_pattern(text: str) -> Pattern | None:
  """Parses `"n:m"` (N:M), a float (unstructured sparsity) or `"dense"`.

  Args:
    text: the pattern as written in a rule string.

  Returns:
    `NM(n, m)`, `Unstructured(sparsity)`, or None for `"dense"`.

  Raises:
    ValueError: naming `text` when it is none of those.

  >>> parse_pattern("2:4"), parse_pattern("0.9"), parse_pattern("dense")
  (NM(n=2, m=4, axis=None, transposable=False), Unstructured(sparsity=0.9, per_output=False), None)
  >>> parse_pattern("half")
  Traceback (most recent call last):
  ...
  ValueError: bad pattern 'half': expected 'n:m', a sparsity in [0, 1) or 'dense'.
  """
  text = text.strip()
  if text == "dense":
    return None
  if ":" in text:
    n, _, m = text.partition(":")
    try:
      return NM(int(n), int(m))
    except (TypeError, ValueError) as err:
      raise ValueError(f"bad N:M pattern {text!r}: {err}") from None
  try:
    sparsity = float(text)
  except ValueError:
    raise ValueError(f"bad pattern {text!r}: expected 'n:m', a sparsity in "
                     "[0, 1) or 'dense'.") from None
  try:
    return Unstructured(sparsity)
  except (TypeError, ValueError) as err:
    raise ValueError(f"bad pattern {text!r}: {err}") from None


def parse_rules(spec: str) -> list["Rule"]:
  """Parses `"REGEX=PATTERN;REGEX=PATTERN"` into a list of `Rule` objects.

  Parts are separated by `;` (blank parts are skipped); each part splits at
  its last `=` into a regex and a pattern (see `parse_pattern`). The order
  is kept: the first matching rule wins.

  Args:
    spec: the rules string.

  Returns:
    A non-empty list of `Rule` objects.

  Raises:
    ValueError: naming the rule text that is malformed, whose pattern is bad
      or whose regex does not compile; or if `spec` holds no rule.

  >>> [(r.path, str(r.pattern)) for r in parse_rules(".*mlp.*=1:8; .*=2:4")]
  [('.*mlp.*', '1:8'), ('.*', '2:4')]
  >>> parse_rules("block_(.*=2:4")
  Traceback (most recent call last):
  ...
  ValueError: bad sparsity rule 'block_(.*=2:4': Rule.path 'block_(.*' is not a valid regex: ...
  """
  if not isinstance(spec, str):
    raise _checks.ParamTypeError(
        f"spec must be a rules string 'REGEX=PATTERN;...'; got {spec!r}.")
  rules = []
  for part in spec.split(";"):
    part = part.strip()
    if not part:
      continue
    regex, sep, pattern = part.rpartition("=")
    if not sep or not regex.strip():
      raise ValueError(f"bad sparsity rule {part!r}: expected 'REGEX=PATTERN' "
                       "(e.g. '.*mlp.*kernel=1:8').")
    try:
      rules.append(Rule(regex.strip(), parse_pattern(pattern)))
    except ValueError as err:
      raise ValueError(f"bad sparsity rule {part!r}: {err}") from None
  if not rules:
    raise ValueError(f"no sparsity rule in {spec!r}; give at least one "
                     "'REGEX=PATTERN'.")
  return rules
