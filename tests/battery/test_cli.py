"""Bad command lines and configs of `python -m sparsejax.pretrain`.

Each case parses a command line in-process (`cli.parse_args`, which loads,
overrides and validates the config and checks the workdir) and must raise a
`ConfigError` whose message names the key or option and the rule; the
command prints that message as its one `error:` line with exit status 2
(`tests/pretrain/test_cli_errors.py` runs the real command).
"""

import os
import tempfile

import ml_collections
import pytest

from tests.battery.cases import case, check_case, params
from sparsejax.pretrain import cli
from sparsejax.pretrain import config as config_lib
from sparsejax.pretrain import validation

E = config_lib.ConfigError
_TMP = tempfile.gettempdir()
_WORKDIR = os.path.join(_TMP, "sparsejax-battery-cli", "run")


def _argv(*args):
  """A thunk parsing `args` (with a writable default workdir)."""
  has_workdir = any(a.startswith("--workdir") for a in args)
  extra = () if has_workdir else ("--workdir", _WORKDIR)
  return lambda: cli.parse_args([*args, *extra])


def _set(key, value, *names):
  """A case: `--config.KEY=VALUE` must be refused naming KEY and `names`."""
  return case(f"{key}={value}", _argv(f"--config.{key}={value}"), E,
              key.replace(".", r"\."), *names)


def _config_file(name, text):
  """A thunk parsing `--config FILE`, FILE holding `text`."""
  def call():
    with tempfile.TemporaryDirectory() as parent:
      path = os.path.join(parent, name)
      with open(path, "w") as f:
        f.write(text)
      return cli.parse_args(["--config", path, "--workdir", _WORKDIR])
  return call


def _validate(**values):
  """A thunk validating the default config with `section__key=value`s (set
  without the ConfigDict's own type checks, as a plain-dict config would)."""
  def call():
    cfg = ml_collections.ConfigDict(
        config_lib.to_dict(config_lib.get_config()), type_safe=False)
    for key, value in values.items():
      section, _, name = key.partition("__")
      cfg[section][name] = value
    validation.validate(cfg)
  return call


_A_FILE = os.path.abspath(__file__)

CASES = [
    # Unknown keys and options, with the closest valid one.
    case("misspelled-key", _argv("--config.optim.lrr=1e-3"), E,
         r"optim\.lrr", r"did you mean 'optim\.lr'"),
    case("misspelled-section", _argv("--config.optimm.lr=1e-3"), E,
         r"optimm\.lr", r"did you mean 'optim\.lr'"),
    case("misspelled-rules", _argv("--config.sparsity.ruls=.*=2:4"), E,
         r"sparsity\.ruls", r"sparsity\.rules"),
    case("key-under-a-leaf", _argv("--config.seed.x=1"), E, r"seed\.x",
         "unknown config key"),
    case("value-for-a-section", _argv("--config.optim=3"), E, r"optim",
         "section"),
    case("misspelled-option", _argv("--workdirr=/tmp/x"), E, r"--workdirr",
         "did you mean '--workdir'"),
    case("stray-argument", _argv("extra"), E, "unexpected argument 'extra'"),
    case("option-without-value", lambda: cli.parse_args(["--config"]), E,
         "--config needs a value"),
    case("verbosity-not-int", _argv("--verbosity=loud"), E, "--verbosity",
         "int"),
    # Values of the wrong type.
    _set("train.steps", "1.5", "must be an int", "1.5"),
    _set("train.steps", "abc", "must be an int"),
    _set("optim.lr", "fast", "must be a number"),
    _set("outputs.plots", "maybe", "true or false"),
    _set("distributed", "yes please", "true or false"),
    _set("sparsity.delta_t", "1.5", "int"),
    # Out-of-domain values.
    _set("optim.lr", "inf", "finite and > 0", "inf"),
    _set("optim.lr", "nan", "finite and > 0", "nan"),
    _set("optim.lr", "0", "finite and > 0"),
    _set("optim.lr", "-1e-3", "finite and > 0"),
    _set("train.steps", "0", ">= 1"),
    _set("train.max_nonfinite_steps", "-1", ">= 0"),
    _set("optim.warmup_steps", "-1", ">= 0"),
    _set("optim.warmup_steps", "500", r"train\.steps=500"),
    _set("optim.end_lr_fraction", "1.5", r"\[0, 1\]"),
    _set("optim.b1", "1.0", r"\[0, 1\)"),
    _set("optim.b2", "-0.1", r"\[0, 1\)"),
    _set("optim.weight_decay", "-1", ">= 0"),
    _set("optim.clip_norm", "inf", ">= 0", "inf"),
    _set("data.batch_size", "0", ">= 1"),
    _set("data.seq_len", "-3", ">= 1"),
    _set("data.val_fraction", "0", r"\(0, 1\)"),
    _set("data.val_fraction", "1.5", r"\(0, 1\)"),
    _set("data.source", "web", "pydoc"),
    _set("data.source", "files", r"data\.paths"),
    _set("model.d_model", "30", r"model\.n_heads=4"),
    _set("model.n_layers", "0", ">= 1"),
    _set("model.dropout", "1.0", r"\[0, 1\)"),
    _set("model.dtype", "float16", "bfloat16"),
    _set("model.positions", "sinusoid", "rotary"),
    _set("sparsity.method", "magic", "progressive_nm"),
    _set("sparsity.rules", "(=2:4", "valid regex"),
    _set("sparsity.rules", "no-equals-sign", "REGEX=PATTERN"),
    _set("sparsity.rules", ".*=3:2", "n <= m"),
    _set("sparsity.decay", "cubic", "exponential"),
    _set("sparsity.structure", "random", "geometric"),
    _set("sparsity.target", "1.0", r"\[0, 1\)"),
    _set("sparsity.c", "0", "finite and > 0"),
    _set("sparsity.c", "-inf", "finite and > 0"),
    _set("sparsity.dense_fraction", "0.9", "finetune_fraction", "no sparse"),
    _set("sparsity.frequency", "0", ">= 1"),
    _set("mesh.data", "0", "-1"),
    _set("checkpoint.every", "0", ">= 1"),
    _set("checkpoint.keep", "0", ">= 1"),
    _set("eval.every", "0", ">= 1"),
    _set("eval.batch_size", "-8", ">= 1"),
    _set("eval.max_windows", "-1", ">= 0"),
    _set("log_every", "0", ">= 1"),
    case("two-mesh-axes-left-over",
         _argv("--config.mesh.data=-1", "--config.mesh.fsdp=-1"), E,
         r"mesh\.data", r"mesh\.fsdp", "at most one"),
    # Config files.
    case("config-file-missing", _argv("--config", "/nonexistent/c.py"), E,
         "config file", "does not exist"),
    case("config-empty", _argv("--config", ""), E,
         "--config needs a recipe name or a file"),
    case("config-unknown-recipe", _argv("--config", "smok:cpu"), E,
         "unknown recipe 'smok'", "did you mean 'smoke'", "gpt_small_rigl_90"),
    case("config-file-syntax-error",
         _config_file("broken.py", "def get_config(:\n"), E,
         "config file", "broken.py", "SyntaxError"),
    case("config-file-raises",
         _config_file("raises.py", "def get_config():\n  return 1 / 0\n"), E,
         "raises.py", "ZeroDivisionError"),
    case("config-file-no-get-config", _config_file("empty.py", "X = 1\n"), E,
         "empty.py", "no get_config"),
    case("config-file-returns-a-dict",
         _config_file("plain.py", "def get_config():\n  return {}\n"), E,
         "plain.py", "ConfigDict"),
    case("config-file-unknown-key",
         _config_file("typo.py", (
             "from sparsejax.pretrain import config\n"
             "def get_config():\n  c = config.get_config()\n"
             "  c.optim.learning_rate = 1e-3\n  return c\n")), E,
         r"optim\.learning_rate", "did you mean"),
    case("config-file-bad-value",
         _config_file("diverge.py", (
             "from sparsejax.pretrain import config\n"
             "def get_config():\n  c = config.get_config()\n"
             "  c.optim.lr = float('inf')\n  return c\n")), E,
         r"optim\.lr", "finite and > 0"),
    # Configs built in Python.
    case("validate-bool-for-int", _validate(train__steps=True), E,
         r"train\.steps", "must be an int"),
    case("validate-str-for-float", _validate(optim__lr="3e-3"), E,
         r"optim\.lr", "must be a float"),
    case("validate-dict-for-float", _validate(optim__b1={"x": 1}), E,
         r"optim\.b1", "must be a float"),
    # Workdirs.
    case("workdir-is-a-file", _argv("--workdir", _A_FILE), E, "--workdir",
         "is a file"),
    case("workdir-under-a-file",
         _argv("--workdir", os.path.join(_A_FILE, "run")), E, "--workdir",
         "cannot be created"),
    case("workdir-empty", _argv("--workdir="), E, "--workdir",
         "must not be empty"),
]


@pytest.mark.parametrize("c", params(CASES))
def test_bad_cli_input(c):
  check_case(c)
