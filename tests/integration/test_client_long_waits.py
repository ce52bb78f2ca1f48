"""``GenqClient.wait`` and ``stream`` on jobs that wait in the queue for longer than a Redis
socket timeout (5 s): they wait their whole course; a Redis that is really gone ends them with
``BrokerUnavailable`` (not a redis-py exception) within 10 s."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from genq.chunks import Chunk
from producers.client import WaitTimeout
from schemas import BrokerUnavailable, JobRecord, JobStatus
from tests.fakes.runtime_server import FakeRuntime
from tests.integration.conftest import Stack, freeze, kill
from tests.support import RedisServer, eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHAT = {"messages": [{"role": "user", "content": "take your time"}]}
LONG_TOKENS = [f"t{i} " for i in range(35)]  # 0.2 s apart: about 7 s
SHORT_MAX_TOKENS = 3
DEAD_REDIS_SECONDS = 10.0


def timed(function: Callable[[], object]) -> tuple[object, float]:
    started = time.monotonic()
    try:
        outcome = function()
    except Exception as exc:  # returned for the test to assert on
        outcome = exc
    return outcome, time.monotonic() - started


def test_wait_and_stream_a_job_queued_behind_a_long_one(
    stack: Stack, fake_runtime: FakeRuntime
) -> None:
    fake_runtime.configure(tokens=LONG_TOKENS, token_delay_seconds=0.2)
    stack.worker("--concurrency", "1")
    client = stack.client()
    front = client.submit(CHAT)
    queued = client.submit({**CHAT, "max_tokens": SHORT_MAX_TOKENS})
    assert eventually(lambda: client.get(front.id).status is JobStatus.RUNNING, 30)
    with ThreadPoolExecutor(2) as pool:
        waiting = pool.submit(timed, lambda: client.wait(queued.id, timeout=45))
        streaming = pool.submit(timed, lambda: list(client.stream(queued.id)))
        (record, waited), (chunks, streamed) = waiting.result(60), streaming.result(60)
    assert isinstance(record, JobRecord), repr(record)
    assert isinstance(chunks, list), repr(chunks)
    assert record.status is JobStatus.SUCCEEDED and record.result is not None
    assert record.result.text == "".join(LONG_TOKENS[:SHORT_MAX_TOKENS])
    assert 5 < waited < 40, waited
    assert all(isinstance(c, Chunk) for c in chunks) and chunks[-1].final
    assert "".join(c.delta for c in chunks) == record.result.text
    assert streamed > 5, streamed
    front_done = client.get(front.id)
    assert front_done.finished_at is not None and record.started_at is not None
    assert front_done.finished_at <= record.started_at


def test_wait_on_a_queued_job_lasts_its_whole_timeout(stack: Stack) -> None:
    client = stack.client()
    job = client.submit(CHAT)  # no worker: it stays queued
    outcome, waited = timed(lambda: client.wait(job.id, timeout=7))
    assert isinstance(outcome, WaitTimeout), repr(outcome)
    assert 7 <= waited < 10, waited


@pytest.mark.parametrize("lose", [kill, freeze], ids=["killed", "frozen"])
def test_redis_lost_mid_wait_raises_broker_unavailable_within_10_seconds(
    own_redis: RedisServer, stack: Stack, lose: Callable[[RedisServer], None]
) -> None:
    submitter = stack.client()
    job = submitter.submit(CHAT)  # no worker: it stays queued
    waiter, streamer = stack.client(), stack.client()  # one Redis connection each
    with ThreadPoolExecutor(2) as pool:
        waiting = pool.submit(timed, lambda: waiter.wait(job.id, timeout=40))
        streaming = pool.submit(timed, lambda: list(streamer.stream(job.id)))
        assert not eventually(lambda: waiting.done() or streaming.done(), 3)
        lose(own_redis)
        lost_at = time.monotonic()
        (waited_outcome, _), (streamed_outcome, _) = waiting.result(30), streaming.result(30)
        ended_after = time.monotonic() - lost_at
    assert isinstance(waited_outcome, BrokerUnavailable), repr(waited_outcome)
    assert isinstance(streamed_outcome, BrokerUnavailable), repr(streamed_outcome)
    assert ended_after < DEAD_REDIS_SECONDS, ended_after
