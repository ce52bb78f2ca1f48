"""What accepting a job fills in: a chat or completion job without ``max_tokens`` gets the
deployment's ``default_max_tokens`` (an embedding has none to get)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from genq import constants as c
from genq.settings import Settings
from producers.submission import new_job
from schemas import JobRequest
from schemas.validation import parse

CHAT = {"messages": [{"role": "user", "content": "Name three colours"}]}


@pytest.mark.parametrize(
    ("body", "max_tokens"),
    [
        (CHAT, c.DEFAULT_MAX_TOKENS),
        ({"kind": "completion", "prompt": "Once upon a time"}, c.DEFAULT_MAX_TOKENS),
        ({**CHAT, "max_tokens": 7}, 7),
        ({"kind": "completion", "prompt": "x", "max_tokens": 1000}, 1000),
        ({"kind": "embedding", "input": "x"}, None),
    ],
)
def test_max_tokens_default(tmp_path: Path, body: dict[str, Any], max_tokens: int | None) -> None:
    job = new_job(Settings(data_dir=tmp_path), parse(JobRequest, body), "acme")
    assert job.request.max_tokens == max_tokens


def test_the_default_is_a_setting(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, default_max_tokens=5)
    assert new_job(settings, parse(JobRequest, CHAT), "acme").request.max_tokens == 5
    assert c.DEFAULT_MAX_TOKENS == 256
