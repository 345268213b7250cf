"""The README's Python blocks run as written, in order, in one namespace.

A block fenced as ```python is executed; a block fenced otherwise (```text,
```bash) is not. Each block may use the names the blocks before it defined,
as a reader pasting them into one session would.
"""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(text: str) -> list[str]:
  """The bodies of the ```python blocks of a Markdown text, in order.

  >>> python_blocks("a\\n```python\\nx = 1\\n```\\n```bash\\nls\\n```\\n")
  ['x = 1\\n']
  """
  return BLOCK.findall(text)


def test_readme_has_python_blocks():
  assert python_blocks(README.read_text()), "README.md has no ```python block"


def test_readme_python_blocks_run_as_written():
  namespace: dict = {"__name__": "readme"}
  for i, block in enumerate(python_blocks(README.read_text())):
    code = compile(block, f"README.md python block {i + 1}", "exec")
    exec(code, namespace)  # noqa: S102 - the README's own example


def test_readme_and_help_quote_the_same_figures():
  """One number for one thing: every figure `--help` gives for the default
  job (wall times, losses, gaps) is the README's."""
  from sparsejax.pretrain import cli

  overview = cli.help_text().split("\n\n")[1]
  figures = re.findall(r"\d+ s\b|[+-]?\d+\.\d+%?", overview)
  assert len(figures) >= 6, overview
  readme = README.read_text()
  missing = [f for f in figures if f not in readme]
  assert not missing, f"--help quotes {missing}, which README.md does not"
  assert "python -m sparsejax.pretrain" in overview
