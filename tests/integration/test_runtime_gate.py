"""A runtime that is down for a while costs the queue one attempt, not every queued job's retries.

Real worker process, real Redis, the fake runtime stopped and started again on its port.
"""

from __future__ import annotations

import time

import pytest

from schemas import JobStatus
from tests.fakes.runtime_server import FakeRuntime
from tests.integration.conftest import Stack
from tests.support import eventually

CHAT = {"kind": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
# The outage itself (a runtime restarting), not a wait for some state: with FAST_TIMINGS'
# backoff (0.2 s doubling to 2 s) and 3 retries, a worker without the gate dead-letters every
# queued job in well under this.
OUTAGE_SECONDS = 8.0


@pytest.mark.parametrize("dispatch", ["direct", "fleet"])
def test_queued_jobs_wait_for_a_restarting_runtime_without_spending_retries(
    stack: Stack, fake_runtime: FakeRuntime, dispatch: str
) -> None:
    # "direct" (GENQ_FLEET_DISPATCH=false): the worker's runtime gate holds the jobs; "fleet"
    # (the default): the endpoint's breaker holds them in the backlog.
    stack.env["GENQ_FLEET_DISPATCH"] = "true" if dispatch == "fleet" else "false"
    stack.env["GENQ_RUNTIME_WAIT_SECONDS"] = "120"
    stack.worker("--concurrency", "1")
    client = stack.client()
    warm = client.submit(CHAT)
    assert client.wait(warm.id, timeout=60).status is JobStatus.SUCCEEDED

    fake_runtime.stop()
    ids = [client.submit(CHAT).id for _ in range(6)]
    # The first job taken finds the runtime gone and is retried: the gate is now closed.
    assert eventually(lambda: client.get(ids[0]).attempts >= 1, timeout=30)
    time.sleep(OUTAGE_SECONDS)
    during = [client.get(i) for i in ids]
    fake_runtime.start()  # same port

    records = [client.wait(i, timeout=120) for i in ids]
    assert [r.status for r in records] == [JobStatus.SUCCEEDED] * len(ids), records
    assert not any(r.status is JobStatus.DEAD_LETTERED for r in during), during
    retried = [r for r in records if r.attempts > 1]
    assert len(retried) <= 1, [(r.id, r.attempts) for r in records]
