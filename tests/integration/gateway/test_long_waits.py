"""Long polls and streams on jobs that wait in the queue for longer than a Redis socket timeout
(5 s): they wait their whole course, and only a Redis that is really gone ends them early."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.fakes.runtime_server import FakeRuntime
from tests.integration.conftest import Stack, freeze, kill
from tests.integration.gateway.conftest import Gateway, GatewayStarter
from tests.support import RedisServer, eventually
from tests.support.sse import read_job_stream, text_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "take your time"}]}
# The job in front: 35 tokens 0.2 s apart, about 7 s, longer than a Redis socket timeout.
LONG_TOKENS = [f"t{i} " for i in range(35)]
TOKEN_DELAY_SECONDS = 0.2
SHORT_MAX_TOKENS = 3
# A Redis that dies must end a wait within this (the bound).
DEAD_REDIS_SECONDS = 10.0


def queue_behind_a_long_job(stack: Stack, api: httpx.Client) -> tuple[str, str]:
    """A worker with one slot busy on a ~7 s job, and a short job queued behind it."""
    stack.worker("--concurrency", "1")
    long_id = api.post("/v1/jobs", json=CHAT).json()["id"]
    short = api.post("/v1/jobs", json={**CHAT, "max_tokens": SHORT_MAX_TOKENS})
    assert short.status_code == 201, short.text
    assert eventually(lambda: api.get(f"/v1/jobs/{long_id}").json()["status"] == "running", 30)
    return long_id, short.json()["id"]


@pytest.fixture
def paced(fake_runtime: FakeRuntime) -> FakeRuntime:
    fake_runtime.configure(tokens=LONG_TOKENS, token_delay_seconds=TOKEN_DELAY_SECONDS)
    return fake_runtime


def test_wait_on_a_queued_job_lasts_its_whole_timeout(gateway: Gateway) -> None:
    api = gateway.client(gateway.key("acme"), timeout=30)
    job_id = api.post("/v1/jobs", json=CHAT).json()["id"]  # no worker: it stays queued
    started = time.monotonic()
    answer = api.get(f"/v1/jobs/{job_id}/wait", params={"timeout": 8})
    elapsed = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "queued"
    assert 8 <= elapsed < 12, elapsed


def test_wait_answers_when_a_job_queued_behind_a_long_one_finishes(
    stack: Stack, gateway: Gateway, paced: FakeRuntime
) -> None:
    api = gateway.client(gateway.key("acme"), timeout=60)
    long_id, short_id = queue_behind_a_long_job(stack, api)
    started = time.monotonic()
    answer = api.get(f"/v1/jobs/{short_id}/wait", params={"timeout": 45})
    elapsed = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    record = answer.json()
    assert record["status"] == "succeeded", record
    assert record["result"]["text"] == "".join(LONG_TOKENS[:SHORT_MAX_TOKENS])
    assert elapsed > 5, "the job was not queued long enough to test anything"
    assert elapsed < 40, "woke at the timeout, not when the job finished"
    front = api.get(f"/v1/jobs/{long_id}").json()
    assert front["status"] == "succeeded" and front["finished_at"] <= record["started_at"]


def test_stream_opened_before_the_job_starts_keeps_alive_then_sends_the_whole_text(
    stack: Stack, start_gateway: GatewayStarter, paced: FakeRuntime
) -> None:
    gateway = start_gateway(gateway_sse_ping_seconds="1")
    api = gateway.client(gateway.key("acme"))
    _long_id, short_id = queue_behind_a_long_job(stack, api)
    opened = time.monotonic()
    status, items = read_job_stream(api, short_id)
    assert status == 200
    assert [i for i in items if i.event == "error"] == [], [i.data for i in items]
    assert items and items[-1].event == "end", [(i.event, i.data) for i in items]
    first_event = next(i for i in items if not i.comment)
    assert first_event.at - opened > 5, "the job was not queued long enough to test anything"
    keep_alives = [i for i in items if i.comment and i.at < first_event.at]
    assert len(keep_alives) >= 3, items
    assert text_of(items) == "".join(LONG_TOKENS[:SHORT_MAX_TOKENS])
    assert items[-1].json()["status"] == "succeeded"


@pytest.mark.parametrize("lose", [kill, freeze], ids=["killed", "frozen"])
def test_redis_lost_mid_wait_answers_broker_unavailable_within_10_seconds(
    own_redis: RedisServer, start_gateway: GatewayStarter, lose: Callable[[RedisServer], None]
) -> None:
    gateway = start_gateway()
    api = gateway.client(gateway.key("acme"), timeout=60)
    job_id = api.post("/v1/jobs", json=CHAT).json()["id"]  # no worker: it stays queued
    with ThreadPoolExecutor(2) as pool:
        waiting = pool.submit(api.get, f"/v1/jobs/{job_id}/wait", params={"timeout": 40})
        streaming = pool.submit(read_job_stream, api, job_id, read_timeout=40)
        # Into the wait, past the first blocking read's start.
        assert not eventually(lambda: waiting.done() or streaming.done(), 3)
        lose(own_redis)
        lost_at = time.monotonic()
        answer = waiting.result(timeout=30)
        answered_after = time.monotonic() - lost_at
        status, items = streaming.result(timeout=30)
        ended_after = items[-1].at - lost_at if items else None
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "broker_unavailable"
    assert answered_after < DEAD_REDIS_SECONDS, answered_after
    assert status == 200 and items and items[-1].event == "error", items
    assert items[-1].json()["error"]["code"] == "broker_unavailable"
    assert ended_after is not None and ended_after < DEAD_REDIS_SECONDS, ended_after
