"""The receiver in docs/webhooks.md runs: served on loopback, it accepts a genq-signed
delivery and refuses a tampered one."""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from genq.webhooks.signing import sign_headers
from tests.support import free_port

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def receiver_snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    [snippet] = [b for b in blocks if "verify_webhook" in b]
    return str(snippet)


def test_the_documented_receiver_is_short() -> None:
    lines = [line for line in receiver_snippet().splitlines() if line.strip()]
    assert len(lines) <= 15


def test_the_documented_receiver_verifies_deliveries(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    namespace: dict[str, Any] = {}
    exec(compile(receiver_snippet(), str(DOC), "exec"), namespace)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(namespace["app"], host="127.0.0.1", port=port, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    body = '{"type":"job.succeeded","timestamp":"t","data":{"id":"job-1","status":"succeeded"}}'
    headers = {
        **sign_headers("msg_1", body, [SECRET], datetime.now(UTC)),
        "content-type": "application/json",
    }
    url = f"http://127.0.0.1:{port}/genq-webhook"
    try:
        assert httpx.post(url, content=body, headers=headers).status_code == 204
        tampered = body.replace("job-1", "job-2")
        assert httpx.post(url, content=tampered, headers=headers).status_code == 401
    finally:
        server.should_exit = True
        thread.join(10)
    assert "job.succeeded job-1 succeeded" in capsys.readouterr().out
