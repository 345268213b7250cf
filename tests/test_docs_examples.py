"""The code examples of the documentation run as written.

Every ```python block of the user guide and of the method pages under
`docs/` is executed, one page per test (blocks of a page share nothing).
The tutorials are executed by the documentation build itself.
"""

import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted([*DOCS.glob("guide/*.md"), *DOCS.glob("methods/*.md")])
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_pages_exist():
  assert PAGES, "no documentation pages found under docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_examples_run(page):
  for i, block in enumerate(BLOCK.findall(page.read_text())):
    exec(compile(block, f"{page.relative_to(DOCS)} (block {i})", "exec"),
         {"__name__": "docs_example"})
