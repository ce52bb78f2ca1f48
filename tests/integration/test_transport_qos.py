"""genq's broker transport records delivered messages as unacked and clears them on ack, as
kombu does, without waiting for Redis's answers."""

from __future__ import annotations

import json

import pytest
import redis

from schemas import JobStatus
from tests.fakes.runtime_server import FakeRuntime
from tests.integration.conftest import Stack
from tests.support import eventually

pytestmark = pytest.mark.integration

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def test_a_running_job_is_recorded_unacked_and_cleared_when_done(
    stack: Stack, fake_runtime: FakeRuntime
) -> None:
    broker = redis.Redis.from_url(stack.settings.redis_url)
    stack.worker("--concurrency", "2")
    client = stack.client()
    fake_runtime.configure(job_delay_seconds=1.5)
    slow = client.submit(CHAT).id
    assert eventually(lambda: client.get(slow).status is JobStatus.RUNNING, timeout=10)
    # What recovers a message whose worker died: its record, written before the job ran.
    records = broker.hgetall("unacked")
    assert len(records) == 1 and broker.zcard("unacked_index") == 1
    raw_message, _exchange, routing_key = json.loads(next(iter(records.values())))
    assert raw_message["headers"]["id"] == slow and routing_key.startswith("genq.")
    assert client.wait(slow, timeout=20).status is JobStatus.SUCCEEDED
    fake_runtime.configure(job_delay_seconds=0)
    quick = [r.id for r in client.submit_many([CHAT] * 40)]
    assert all(client.wait(job_id, timeout=30).status is JobStatus.SUCCEEDED for job_id in quick)
    assert eventually(
        lambda: broker.hlen("unacked") == 0 and broker.zcard("unacked_index") == 0, timeout=10
    )
