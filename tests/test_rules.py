"""The rules mini-language: `sparsejax.rules.parse_rules` / `parse_pattern`."""

import jax.numpy as jnp
import pytest

import sparsejax as sj
from sparsejax import rules as rules_lib


def test_parse_rules_keeps_order_and_patterns():
  rules = rules_lib.parse_rules(
      " .*mlp.*kernel = 1:8 ;; .*attn.*=0.75; .*=dense ;")
  assert [r.path for r in rules] == [".*mlp.*kernel", ".*attn.*", ".*"]
  assert rules[0].pattern == sj.NM(1, 8)
  assert rules[1].pattern == sj.Unstructured(0.75)
  assert rules[2].pattern is None


def test_parsed_rules_apply_like_written_rules():
  params = {"mlp": {"kernel": jnp.ones((8, 4))},
            "attn": {"kernel": jnp.ones((8, 4))}}
  parsed = rules_lib.parse_rules(r".*mlp.*=2:4;attn/kernel=dense")
  written = [sj.Rule(".*mlp.*", sj.NM(2, 4)), sj.Rule("attn/kernel", None)]
  assert ({p: r and r.pattern for p, r in sj.rules.assign(params, parsed).items()}
          == {p: r and r.pattern
              for p, r in sj.rules.assign(params, written).items()})


def test_a_regex_may_hold_an_equals_sign():
  (rule,) = rules_lib.parse_rules("a=b=2:4")
  assert rule.path == "a=b" and rule.pattern == sj.NM(2, 4)


@pytest.mark.parametrize("spec,match", [
    ("no-equals-sign", r"bad sparsity rule 'no-equals-sign'.*REGEX=PATTERN"),
    ("=2:4", r"bad sparsity rule '=2:4'"),
    (".*=3:2", r"bad sparsity rule '\.\*=3:2'.*n <= m"),
    (".*=2:x", r"bad sparsity rule '\.\*=2:x'.*bad N:M pattern '2:x'"),
    (".*=1.5", r"bad sparsity rule '\.\*=1\.5'.*\[0, 1\)"),
    (".*=half", r"bad pattern 'half'"),
    ("ok=2:4;block_(.*=2:4",
     r"bad sparsity rule 'block_\(\.\*=2:4'.*not a valid regex"),
    (" ; ", "no sparsity rule"),
    ("", "no sparsity rule"),
])
def test_bad_rules_name_the_rule_text(spec, match):
  with pytest.raises(ValueError, match=match):
    rules_lib.parse_rules(spec)


def test_not_a_string():
  with pytest.raises(TypeError, match="string"):
    rules_lib.parse_rules([sj.Rule(".*", sj.NM(2, 4))])


@pytest.mark.parametrize("text,expected", [
    ("2:4", sj.NM(2, 4)), (" 1:16 ", sj.NM(1, 16)),
    ("0.5", sj.Unstructured(0.5)), ("0", sj.Unstructured(0.0)),
    ("dense", None)])
def test_parse_pattern(text, expected):
  assert rules_lib.parse_pattern(text) == expected
