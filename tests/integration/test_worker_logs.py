"""A real worker's log: JSON lines with the job's context, no prompt or output, no secret."""

from __future__ import annotations

import json
import secrets
import uuid

import pytest

from schemas import JobStatus
from tests.fakes.runtime_server import FakeRuntime, Fault
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


def test_worker_logs_are_json_with_context_and_without_content_or_secrets(
    stack: Stack, fake_runtime: FakeRuntime
) -> None:
    api_key = f"sk-{secrets.token_hex(16)}"
    webhook_secret = f"whsec_{secrets.token_urlsafe(24)}"
    prompt = f"confidential prompt {uuid.uuid4().hex}"
    stack.env.update(
        GENQ_LOG_JSON="true",
        GENQ_LOG_LEVEL="INFO",
        GENQ_RUNTIME_API_KEY=api_key,
        GENQ_WEBHOOK_SECRET=webhook_secret,
    )
    worker = stack.worker()
    fake_runtime.fail_next.append(Fault.status(503, retry_after=0))  # a retry gets logged
    client = stack.client()
    record = client.submit({"messages": [{"role": "user", "content": prompt}]})
    done = client.wait(record.id, timeout=30)
    assert done.status is JobStatus.SUCCEEDED and done.result is not None
    worker.stop()

    text = worker.log_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line
    assert any(line["event"].endswith(" ready.") for line in lines)
    in_job = [line for line in lines if line.get("job_id") == record.id]
    assert in_job, "no log line carries the job id"
    assert any(
        (line.get("tenant"), line.get("lane"), line.get("attempt")) == ("default", "interactive", 1)
        for line in in_job
    ), in_job
    for forbidden in (prompt, done.result.text, api_key, webhook_secret):
        assert forbidden and forbidden not in text
