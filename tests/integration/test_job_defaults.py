"""A job without ``max_tokens`` stops at the deployment's default on a real worker, where a
small model would otherwise generate until its context is full."""

from __future__ import annotations

import pytest

from schemas import JobStatus
from tests.fakes.runtime_server import FakeRuntime
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


def test_a_job_without_max_tokens_stops_at_the_default(
    stack: Stack, fake_runtime: FakeRuntime
) -> None:
    fake_runtime.configure(tokens=[f" w{i}" for i in range(50)])
    stack.env["GENQ_DEFAULT_MAX_TOKENS"] = "3"
    stack.worker()
    client = stack.client()
    job = client.submit({"messages": [{"role": "user", "content": "Name three colours"}]})
    assert job.request["max_tokens"] == 3
    done = client.wait(job.id, timeout=30)
    assert done.status is JobStatus.SUCCEEDED
    assert done.result is not None and done.result.text == " w0 w1 w2"
    assert done.result.finish_reason == "length"
    assert done.usage is not None and done.usage.completion_tokens == 3
