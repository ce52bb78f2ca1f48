"""JSON ``true`` is not the number 1: the Python client, the CLI and the admin API refuse it
with ``invalid_request`` (over HTTP: ``gateway/test_bad_input.py``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from schemas import InvalidRequest
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("field", ["priority", "max_tokens", "seed", "temperature"])
def test_the_client_refuses_a_boolean_number(stack: Stack, field: str) -> None:
    client = stack.client()
    with pytest.raises(InvalidRequest) as info:
        client.submit({**CHAT, field: True})
    assert [d["field"] for d in info.value.details] == [field]
    assert client.store.list(tenant=None, limit=10).records == []


def test_the_cli_refuses_a_boolean_priority(stack: Stack) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "genq", "submit", "--json", "-"],
        input=json.dumps({**CHAT, "priority": True}),
        env=stack.env | {"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    error = json.loads(done.stderr.strip().splitlines()[-1])["error"]
    assert error["code"] == "invalid_request"
    assert error["details"][0]["field"] == "priority"
