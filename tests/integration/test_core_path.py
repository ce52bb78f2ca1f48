"""The core job path against a real Redis, real worker processes and a fake runtime over HTTP."""

from __future__ import annotations

import time

import pytest

from schemas import InvalidRequest, JobStatus
from tests.fakes.runtime_server import FakeRuntime
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

CHAT = {"messages": [{"role": "user", "content": "say hello"}]}


def test_chat_job_succeeds_with_usage_and_timings(stack: Stack) -> None:
    stack.worker()
    client = stack.client()
    record = client.submit({**CHAT, "priority": 7, "metadata": {"team": "search"}})
    assert record.status is JobStatus.QUEUED
    done = client.wait(record.id, timeout=20)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.result is not None and done.result.text == "Hello, world!"
    assert done.result.finish_reason == "stop"
    assert done.usage is not None and done.usage.completion_tokens == 4
    assert done.created_at <= done.started_at <= done.first_token_at <= done.finished_at  # type: ignore[operator]
    assert done.attempts == 1 and done.worker_id
    assert done.metadata == {"team": "search"}


def test_embedding_job_returns_one_vector_per_input(stack: Stack) -> None:
    stack.worker()
    client = stack.client()
    record = client.submit({"kind": "embedding", "input": ["alpha", "beta gamma"]})
    done = client.wait(record.id, timeout=20)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.result is not None and done.result.embeddings is not None
    assert len(done.result.embeddings) == 2
    assert len({len(v) for v in done.result.embeddings}) == 1


def test_bad_request_enqueues_nothing(stack: Stack) -> None:
    client = stack.client()
    with pytest.raises(InvalidRequest) as info:
        client.submit({**CHAT, "temperature": 5})
    assert info.value.details[0]["field"] == "temperature"
    assert client.redis.keys("genq.*") == []
    assert client.store.list(tenant=None).records == []


def test_unknown_lane_is_refused(stack: Stack) -> None:
    client = stack.client()
    with pytest.raises(InvalidRequest, match="unknown lane"):
        client.submit({**CHAT, "lane": "nope"})


def test_reply_queue_receives_each_terminal_record_once(
    stack: Stack, fake_runtime: FakeRuntime
) -> None:
    stack.worker()
    client = stack.client()
    ids = {client.submit({**CHAT, "reply_to": "svc.replies"}).id for _ in range(5)}
    failed = client.submit({**CHAT, "model": "missing", "reply_to": "svc.replies"}).id
    got = [r for r in client.replies("svc.replies", timeout=10)]
    assert sorted(r.id for r in got) == sorted([*ids, failed])
    statuses = {r.id: r.status for r in got}
    assert statuses[failed] is JobStatus.FAILED
    assert all(statuses[i] is JobStatus.SUCCEEDED for i in ids)


def test_submit_many_accepts_all_or_nothing(stack: Stack) -> None:
    client = stack.client()
    with pytest.raises(InvalidRequest):
        client.submit_many([CHAT, {**CHAT, "priority": 12}, CHAT])
    assert client.store.list(tenant=None).records == []
    records = client.submit_many([{**CHAT, "priority": p} for p in (1, 9, 5)])
    assert [r.priority for r in records] == [1, 9, 5]
    assert all(r.status is JobStatus.QUEUED for r in records)
    stack.worker()
    assert all(client.wait(r.id, timeout=20).status is JobStatus.SUCCEEDED for r in records)


def test_wait_sees_past_an_end_left_from_before_a_requeue(stack: Stack) -> None:
    from genq.chunks import ChunkWriter
    from producers.client import WaitTimeout

    client = stack.client()
    job_id = client.submit(CHAT).id
    # A dead-lettered and requeued job keeps its old stream, whose last entry is an end.
    old = ChunkWriter(client.redis, job_id, coalesce_ms=0, maxlen=100, ttl_seconds=60)
    old.finish("dead_lettered", None, None)
    started = time.monotonic()
    with pytest.raises(WaitTimeout):
        client.wait(job_id, timeout=1.5)
    assert time.monotonic() - started >= 1.4
    stack.worker()
    done = client.wait(job_id, timeout=20)
    assert done.status is JobStatus.SUCCEEDED and done.result is not None
