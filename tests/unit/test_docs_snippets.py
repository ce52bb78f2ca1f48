"""Code shown in the docs is the code the tests run: each example file appears verbatim."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def python_blocks(markdown: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", markdown.read_text(), re.S | re.M)


@pytest.mark.parametrize(
    ("page", "example"),
    [
        ("README.md", "docs/examples/quickstart.py"),
        ("docs/replies.md", "docs/examples/replies.py"),
        ("docs/replies.md", "docs/examples/replies_without_genq.py"),
        ("docs/openai.md", "docs/examples/openai_chat.py"),
        ("docs/openai.md", "docs/examples/openai_responses.py"),
        ("docs/openai.md", "docs/examples/openai_batch.py"),
    ],
)
def test_the_page_shows_the_tested_example(page: str, example: str) -> None:
    assert (ROOT / example).read_text() in python_blocks(ROOT / page)
