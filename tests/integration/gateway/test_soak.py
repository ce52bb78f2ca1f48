"""Soak: a queue that really queues, watched the ways a user watches it.

One worker slot and a paced fake runtime (real OpenAI SSE over HTTP), 150 jobs at mixed
priorities queued before the worker starts, so the last ones wait more than a minute. Meanwhile
30 clients long-poll ``/wait?timeout=30`` in a loop, 10 SSE streams are open on jobs that have
not started, and ``GenqClient.wait``/``stream`` run in threads. Every job succeeds once: one
terminal transition, one reply, one webhook event; every watcher sees its job's end; no client
ever sees a 5xx or an ``error`` event. Bounded: 150 jobs, about 90 s.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from genq.chunks import Chunk
from genq.store.tables import job_history
from producers import GenqClient
from schemas import JobRecord, JobStatus
from tests.fakes.runtime_server import FakeRuntime
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.integration.conftest import Stack
from tests.integration.gateway.conftest import GatewayStarter
from tests.support.sse import SseItem, read_job_stream, text_of

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.soak]

JOBS = 150
WAITERS = 30
STREAMS = 10
CLIENT_WATCHERS = 5  # GenqClient.wait threads, and as many GenqClient.stream threads
WAIT_TIMEOUT_SECONDS = 30
# About 0.5 s a job in one slot: the 150th starts more than 60 s after it was queued.
TOKENS = ["The", " queue", " held", " this", " job"]
PACE = {"job_delay_seconds": 0.3, "token_delay_seconds": 0.04}
CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "soak"}]}
REPLY_QUEUE = "soak.replies"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TERMINAL = {s.value for s in JobStatus if s.terminal}
RUN_SECONDS = 200  # every watcher is done by then, or the test fails


@dataclass(frozen=True)
class Poll:
    """One ``/wait`` answer as a long-polling client saw it."""

    job_id: str
    status_code: int
    body: dict[str, Any]
    seconds: float

    @property
    def terminal(self) -> bool:
        return self.status_code == 200 and self.body.get("status") in TERMINAL


@dataclass
class Watchers:
    """Calls running in daemon threads: one stuck watcher fails the join, not the whole run."""

    results: dict[str, object] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, name: str, call: Callable[[], object]) -> None:
        def run() -> None:
            try:
                self.results[name] = call()
            except Exception as exc:  # what the thread saw, asserted on below
                self.results[name] = exc

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self, timeout: float) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self.threads if t.is_alive()]
        assert not stuck, f"still watching after {timeout} s: {stuck}"
        return self.results


def long_poll(api: httpx.Client, job_ids: list[str]) -> list[Poll]:
    """``/wait?timeout=30`` on each job in turn, again and again until it is terminal."""
    polls: list[Poll] = []
    for job_id in job_ids:
        while True:
            started = time.monotonic()
            answer = api.get(f"/v1/jobs/{job_id}/wait", params={"timeout": WAIT_TIMEOUT_SECONDS})
            json_answer = answer.headers.get("content-type", "").startswith("application/json")
            body = answer.json() if json_answer else {}
            polls.append(Poll(job_id, answer.status_code, body, time.monotonic() - started))
            if answer.status_code != 200 or polls[-1].terminal:
                break
    return polls


def read_client_stream(client: GenqClient, job_id: str) -> list[Chunk]:
    return list(client.stream(job_id))


def submit_all(api: httpx.Client, receiver: WebhookReceiver) -> dict[str, int]:
    """150 jobs at seeded random priorities; their ids (in submission order) to priorities."""
    rng = random.Random(150)
    priorities: dict[str, int] = {}
    for _ in range(JOBS):
        priority = rng.randrange(10)
        body = {
            **CHAT,
            "priority": priority,
            "reply_to": REPLY_QUEUE,
            "webhook_url": receiver.url(),
        }
        created = api.post("/v1/jobs", json=body)
        assert created.status_code == 201, created.text
        priorities[created.json()["id"]] = priority
    return priorities


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


@pytest.mark.timeout(300)
def test_soak_150_queued_jobs_watched_by_long_polls_streams_and_clients(
    stack: Stack,
    start_gateway: GatewayStarter,
    fake_runtime: FakeRuntime,
    receiver: WebhookReceiver,
) -> None:
    fake_runtime.configure(tokens=TOKENS, **PACE)
    stack.env.update(
        {
            "GENQ_WEBHOOK_ALLOW": "127.0.0.1/32",
            "GENQ_WEBHOOK_SECRET": WEBHOOK_SECRET,
            # Production lease timings: this test is about queueing, not lease recovery on a
            # machine busy with 50 watchers.
            "GENQ_LEASE_SECONDS": "15",
            "GENQ_LEASE_RENEW_SECONDS": "5",
            "GENQ_SWEEP_INTERVAL_SECONDS": "5",
        }
    )
    gateway = start_gateway(gateway_sse_ping_seconds="2")
    stack.ops_worker()
    stack.beat()
    key = gateway.key("soak")
    priorities = submit_all(gateway.client(key), receiver)
    # The runtime's one slot was free at the first submit, so the dispatcher released that job
    # into the broker at once (no worker runs yet); every other job waits in genq's backlog and
    # runs by priority, equal priorities in submission order.
    first, *later = priorities
    ranked = [first, *sorted(later, key=lambda j: -priorities[j])]
    watchers = Watchers()
    for k in range(WAITERS):
        mine = ranked[k::WAITERS]  # one early job, ..., one of the last
        # Half wait for their last job first (long polls that time out and go round again),
        # half in run order (long polls woken by each job's end in turn).
        order = mine[::-1] if k % 2 else mine
        api = gateway.client(key, timeout=WAIT_TIMEOUT_SECONDS + 15)
        watchers.start(f"waiter-{k}", partial(long_poll, api, order))
    streamed = ranked[JOBS - 1 - STREAMS * 9 :: 9][:STREAMS]  # spread over the later 60 %
    for job_id in streamed:
        api = gateway.client(key)
        watchers.start(f"sse-{job_id}", partial(read_job_stream, api, job_id))
    client_waits = ranked[-2 * CLIENT_WATCHERS :: 2]
    client_streams = ranked[-2 * CLIENT_WATCHERS + 1 :: 2]
    for job_id in client_waits:
        client = stack.client("soak")
        watchers.start(f"wait-{job_id}", partial(client.wait, job_id, timeout=RUN_SECONDS))
    for job_id in client_streams:
        client = stack.client("soak")
        watchers.start(f"stream-{job_id}", partial(read_client_stream, client, job_id))
    opened_at = datetime.now(UTC)

    worker_started = time.monotonic()
    stack.worker("--concurrency", "1")
    results = watchers.join(RUN_SECONDS)
    watched_seconds = time.monotonic() - worker_started

    store = stack.client("*")
    records = {job_id: store.get(job_id) for job_id in priorities}
    assert Counter(r.status for r in records.values()) == {JobStatus.SUCCEEDED: JOBS}
    assert {r.result.text for r in records.values() if r.result} == {"".join(TOKENS)}
    queued_for = [(r.started_at - r.created_at).total_seconds() for r in records.values()]  # type: ignore[operator]
    polls = [
        p
        for name, r in results.items()
        if name.startswith("waiter-") and isinstance(r, list)
        for p in r
    ]
    print(
        f"\n[soak] jobs={JOBS} watched_s={watched_seconds:.0f} "
        f"longest_queued_s={max(queued_for):.0f} long_polls={len(polls)} "
        f"long_polls_timed_out={sum(not p.terminal for p in polls)}"
    )
    assert max(queued_for) > 60, f"the last job waited only {max(queued_for):.0f} s"
    run_order = sorted(priorities, key=lambda j: records[j].started_at)  # type: ignore[arg-type,return-value]
    assert [priorities[j] for j in run_order] == [priorities[j] for j in ranked]

    assert_long_polls(results, records)
    assert_streams(results, records, streamed, opened_at)
    assert_client_watchers(results, records, client_waits, client_streams)
    assert_once_each(stack, receiver, set(priorities))


def assert_long_polls(results: dict[str, object], records: dict[str, JobRecord]) -> None:
    polls: list[Poll] = []
    for k in range(WAITERS):
        outcome = results[f"waiter-{k}"]
        assert isinstance(outcome, list), f"waiter-{k}: {outcome!r}"
        polls.extend(outcome)
    assert [p for p in polls if p.status_code != 200] == []
    finals = {p.job_id: p.body for p in polls if p.terminal}
    assert set(finals) == set(records)
    for job_id, body in finals.items():
        stored = records[job_id].model_dump(mode="json")
        assert (body["status"], body["result"]) == ("succeeded", stored["result"]), body
    timed_out = [p.seconds for p in polls if not p.terminal]
    assert len(timed_out) >= WAITERS // 2, "no long poll outlasted its timeout"
    assert min(timed_out) >= WAIT_TIMEOUT_SECONDS - 0.5, min(timed_out)


def assert_streams(
    results: dict[str, object],
    records: dict[str, JobRecord],
    streamed: list[str],
    opened_at: datetime,
) -> None:
    for job_id in streamed:
        outcome = results[f"sse-{job_id}"]
        assert isinstance(outcome, tuple), f"sse-{job_id}: {outcome!r}"
        status, items = outcome
        assert status == 200
        seen: list[SseItem] = items
        assert [i.data for i in seen if i.event == "error"] == []
        assert seen and seen[-1].event == "end", [(i.event, i.data) for i in seen[-3:]]
        assert seen[-1].json()["status"] == "succeeded"
        assert text_of(seen) == records[job_id].result.text  # type: ignore[union-attr]
        started = records[job_id].started_at
        assert started is not None and started > opened_at
        first = next(i for i in seen if not i.comment)
        assert any(i.comment and i.at < first.at for i in seen), "no keep-alive while queued"


def assert_client_watchers(
    results: dict[str, object],
    records: dict[str, JobRecord],
    client_waits: list[str],
    client_streams: list[str],
) -> None:
    for job_id in client_waits:
        outcome = results[f"wait-{job_id}"]
        assert isinstance(outcome, JobRecord), f"wait-{job_id}: {outcome!r}"
        assert outcome.status is JobStatus.SUCCEEDED
        assert outcome.result == records[job_id].result
    for job_id in client_streams:
        outcome = results[f"stream-{job_id}"]
        assert isinstance(outcome, list), f"stream-{job_id}: {outcome!r}"
        assert outcome and outcome[-1].final and outcome[-1].data is not None
        assert outcome[-1].data["status"] == "succeeded"
        text = "".join(c.delta for c in outcome if c.type == "delta")
        assert text == records[job_id].result.text  # type: ignore[union-attr]


def assert_once_each(stack: Stack, receiver: WebhookReceiver, job_ids: set[str]) -> None:
    """One terminal transition, one reply and one webhook event per job."""
    client = stack.client("*")
    with client.store.engine.connect() as conn:
        rows = conn.execute(
            select(job_history.c.job_id).where(job_history.c.to_status.in_(TERMINAL))
        ).all()
    terminal_transitions = Counter(row[0] for row in rows)
    assert set(terminal_transitions) == job_ids
    assert max(terminal_transitions.values()) == 1, terminal_transitions.most_common(3)
    replies = Counter(r.id for r in client.replies(REPLY_QUEUE, timeout=5))
    assert set(replies) == job_ids and max(replies.values()) == 1, replies.most_common(3)
    hits = receiver.wait_for(len(job_ids), timeout=30)
    events: dict[str, set[str]] = {}
    for hit in hits:
        payload = hit.verify(WEBHOOK_SECRET)
        assert payload["type"] == "job.succeeded"
        events.setdefault(payload["data"]["id"], set()).add(hit.webhook_id)
    assert set(events) == job_ids
    assert max(len(ids) for ids in events.values()) == 1, "a job had two webhook events"
