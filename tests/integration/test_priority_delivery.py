"""Priority ordering and at-least-once delivery against a real worker."""

from __future__ import annotations

import json
import uuid

import amqp
import pytest
from kombu import Connection

from genq import constants as c
from schemas import JobStatus, celery_priority
from tests.fakes.runtime_server import FakeRuntime
from tests.integration.conftest import Stack, both_brokers
from tests.support import eventually
from tests.support.brokers import BrokerProbe

pytestmark = pytest.mark.integration

CHAT = {"messages": [{"role": "user", "content": "x"}]}


def _wait_status(stack: Stack, job_id: str, status: JobStatus, timeout: float = 15) -> None:
    client = stack.client()
    assert eventually(lambda: client.get(job_id).status is status, timeout=timeout), (
        f"{job_id} never reached {status}"
    )


def _all_messages_acked(probe: BrokerProbe) -> bool:
    """No task message waits in a lane or is held unacknowledged by a worker."""
    return probe.ready(f"{c.QUEUE_PREFIX}interactive") == 0 and probe.unacked() == 0


@both_brokers
def test_urgent_job_submitted_last_starts_next(stack: Stack, fake_runtime: FakeRuntime) -> None:
    fake_runtime.configure(job_delay_seconds=1.5)
    stack.worker("--concurrency", "1")
    client = stack.client()
    blocker = client.submit({**CHAT, "priority": 5}).id
    _wait_status(stack, blocker, JobStatus.RUNNING)
    low = [client.submit({**CHAT, "priority": 1}).id for _ in range(20)]
    urgent = client.submit({**CHAT, "priority": 9}).id
    fake_runtime.configure(job_delay_seconds=0)
    for job_id in [blocker, urgent, *low]:
        assert client.wait(job_id, timeout=60).status is JobStatus.SUCCEEDED
    order = sorted([blocker, urgent, *low], key=lambda j: client.get(j).started_at)  # type: ignore[arg-type,return-value]
    assert order[:2] == [blocker, urgent]
    # Equal priorities stay FIFO.
    assert order[2:] == low


@both_brokers
def test_duplicate_delivery_completes_once_and_replies_once(
    stack: Stack, fake_runtime: FakeRuntime, broker_probe: BrokerProbe
) -> None:
    client = stack.client()
    record = client.submit({**CHAT, "reply_to": "dup.replies"})
    # Deliver the very same task message a second time, as a broker redelivery would: the
    # same task id and the same slot the dispatcher released it with.
    assert broker_probe.ready(f"{c.QUEUE_PREFIX}interactive") == 1  # released with the slot
    if broker_probe.amqp:
        _copy_amqp_message(stack.settings.effective_broker_url, f"{c.QUEUE_PREFIX}interactive")
    else:
        with Connection(stack.settings.redis_url) as conn:
            conn.default_channel.client.lpush(
                f"{c.QUEUE_PREFIX}interactive:{celery_priority(5)}"
                if celery_priority(5)
                else f"{c.QUEUE_PREFIX}interactive",
                *[_raw_message(conn, record.id)] * 1,
            )
    assert broker_probe.ready(f"{c.QUEUE_PREFIX}interactive") == 2
    stack.worker("--concurrency", "2", "--pool", "threads")
    done = client.wait(record.id, timeout=20)
    assert done.status is JobStatus.SUCCEEDED
    assert eventually(lambda: _all_messages_acked(broker_probe), timeout=10)  # the duplicate too
    replies = list(client.replies("dup.replies", timeout=0.5))
    assert [r.id for r in replies] == [record.id]
    history = client.get(record.id, history=True).history or []
    assert [h.to_status for h in history] == [
        JobStatus.QUEUED,
        JobStatus.RUNNING,
        JobStatus.SUCCEEDED,
    ]
    assert fake_runtime.stats()["job_requests_seen"] == 1


def _copy_amqp_message(url: str, queue: str) -> None:
    """Publish a byte-for-byte copy of the message waiting on ``queue`` next to it."""
    with Connection(url) as conn:
        channel = conn.channel()
        try:
            original = channel.basic_get(queue, no_ack=False)
            assert original is not None, "task message not found in the broker"
            copy = amqp.Message(original.body, **original.properties)
            channel.basic_publish(copy, exchange="", routing_key=queue)
            channel.basic_reject(original.delivery_tag, requeue=True)
        finally:
            channel.close()


def _raw_message(conn: Connection, job_id: str) -> str:
    """A copy of the job's task message as Celery's Redis transport stores it."""
    client = conn.default_channel.client
    for key in client.keys(f"{c.QUEUE_PREFIX}interactive*"):
        for raw in client.lrange(key, 0, -1):
            payload = json.loads(raw)
            if payload["headers"]["id"] == job_id:
                copy = dict(payload)
                copy["properties"] = {**payload["properties"], "delivery_tag": str(uuid.uuid4())}
                return json.dumps(copy)
    raise AssertionError("task message not found in the broker")
