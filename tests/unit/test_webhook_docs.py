"""The receiver in docs/webhooks.md runs: served on loopback, it accepts a genq-signed
delivery and refuses a tampered, replayed, unsigned or wrongly signed one."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from genq.webhooks.signing import sign_headers
from tests.support import eventually, free_port

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
BODY = '{"type":"job.succeeded","timestamp":"t","data":{"id":"job-1","status":"succeeded"}}'


def receiver_snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    [snippet] = [b for b in blocks if "verify_webhook" in b]
    return str(snippet)


@pytest.fixture
def documented_receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The documented receiver served by uvicorn on loopback; yields its webhook URL."""
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    namespace: dict[str, Any] = {}
    exec(compile(receiver_snippet(), str(DOC), "exec"), namespace)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(namespace["app"], host="127.0.0.1", port=port, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert eventually(lambda: server.started, timeout=10)
        yield f"http://127.0.0.1:{port}/genq-webhook"
    finally:
        server.should_exit = True
        thread.join(10)


def signed(message_id: str, body: str, at: datetime, secret: str = SECRET) -> dict[str, str]:
    return {**sign_headers(message_id, body, [secret], at), "content-type": "application/json"}


def test_the_documented_receiver_verifies_deliveries(
    documented_receiver: str, capsys: pytest.CaptureFixture[str]
) -> None:
    headers = signed("msg_1", BODY, datetime.now(UTC))
    assert httpx.post(documented_receiver, content=BODY, headers=headers).status_code == 204
    tampered = BODY.replace("job-1", "job-2")
    assert httpx.post(documented_receiver, content=tampered, headers=headers).status_code == 401
    assert "job.succeeded job-1 succeeded" in capsys.readouterr().out


def test_the_documented_receiver_refuses_replayed_and_unsigned_deliveries(
    documented_receiver: str, capsys: pytest.CaptureFixture[str]
) -> None:
    replayed = signed("msg_2", BODY, datetime.now(UTC) - timedelta(minutes=10))  # old capture
    assert httpx.post(documented_receiver, content=BODY, headers=replayed).status_code == 401
    future = signed("msg_3", BODY, datetime.now(UTC) + timedelta(minutes=10))
    assert httpx.post(documented_receiver, content=BODY, headers=future).status_code == 401
    unsigned = {"content-type": "application/json"}
    assert httpx.post(documented_receiver, content=BODY, headers=unsigned).status_code == 401
    other_secret = {
        **sign_headers(
            "msg_4", BODY, ["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"], datetime.now(UTC)
        ),
        "content-type": "application/json",
    }
    assert httpx.post(documented_receiver, content=BODY, headers=other_secret).status_code == 401
    assert capsys.readouterr().out == ""  # none of them reached "your work here"
