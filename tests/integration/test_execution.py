"""One attempt of one job (``tasks.execution.run_job``), in this process: a real Redis and a
real SQLite store, the runtime an ``httpx.MockTransport`` answering from a script.

``run_job`` is called directly, as the Celery task does, once per delivery of the job's
message; a retry's message is read back from the broker instead of waiting for its countdown.
Most tests run the path straight to the broker (``GENQ_FLEET_DISPATCH=false``: one worker,
its runtime); the last ones the default, dispatched path, where a job's message carries the
slot the dispatcher holds for it on the runtime (``genq.fleet``).
What needs processes (kill -9, SIGTERM, the consumer) stays in ``test_chaos`` and friends.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from genq.chunks import Chunk, read_chunks
from genq.fleet import keys as fleet_keys
from genq.settings import Settings
from genq.store import utcnow
from producers import GenqClient
from schemas import ErrorCode, JobRecord, JobStatus
from tasks.execution import run_job
from tasks.sweep import run_sweep
from tests.fakes.mock_runtime import BASE_URL, MockRuntime, Raise, Status, Stream
from tests.support import eventually
from workers.app import create_worker_app
from workers.context import WorkerContext, build_context

pytestmark = pytest.mark.integration

CHAT = {"messages": [{"role": "user", "content": "say hello"}]}
LEASE_SECONDS = 3.0
MAX_RETRIES = 3
# A stream this long would take 10 s: a test that waits for it to end has failed.
ENDLESS = Stream(tokens=tuple(f"t{i} " for i in range(500)), pace_seconds=0.02)


@dataclass
class InProcessWorker:
    """A worker process's context, built here, with the runtime's transport mocked."""

    ctx: WorkerContext
    client: GenqClient
    runtime: MockRuntime

    def submit(self, **fields: Any) -> str:
        return self.client.submit({**CHAT, **fields}).id

    def run(self, job_id: object, slot: object = None) -> str:
        """One delivery of ``job_id``'s message; what ``run_job`` says happened. ``slot``: the
        slot the message carries (the dispatched path)."""
        return run_job(self.ctx, job_id, slot)

    def sent_slot(self, job_id: str) -> dict[str, Any]:
        """The slot the dispatcher sent ``job_id``'s newest message with."""
        *_, message = self.messages(job_id)
        _args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        slot: dict[str, Any] = kwargs["slot"]
        return slot

    def slot_tokens(self, endpoint: str = "default") -> list[str]:
        """The slot leases held on ``endpoint`` now."""
        return [t.decode() for t in self.client.redis.zrange(fleet_keys.slots(endpoint), 0, -1)]

    def generations(self) -> list[httpx.Request]:
        """The requests that asked the runtime to generate or embed (not health probes)."""
        return [r for r in self.runtime.requests if r.method == "POST"]

    def record(self, job_id: str) -> JobRecord:
        return self.client.get(job_id, history=True)

    def chunks(self, job_id: str) -> list[Chunk]:
        """The job's chunk stream as written so far."""
        return read_chunks(self.client.redis, job_id, block_ms=1)

    def dead_letters(self) -> list[dict[str, Any]]:
        """The bodies of the messages in the broker's dead-letter queue."""
        raws = self.client.redis.lrange("genq.dead_letter", 0, -1)
        return [json.loads(base64.b64decode(json.loads(raw)["body"])) for raw in raws]

    def messages(self, job_id: str) -> list[dict[str, Any]]:
        """The task messages for ``job_id`` waiting in the lanes (oldest publish first)."""
        found = []
        for key in self.client.redis.keys("genq.*"):
            if self.client.redis.type(key) == b"list":
                for raw in self.client.redis.lrange(key, 0, -1):
                    message = json.loads(raw)
                    if message["headers"].get("id") == job_id:
                        found.append(message)
        return found


@pytest.fixture
def overrides() -> dict[str, Any]:
    """Settings a test changes (``@pytest.mark.parametrize("overrides", [{...}])``)."""
    return {}


DISPATCHED = pytest.mark.parametrize("overrides", [{"fleet_dispatch": True}], ids=["dispatched"])


@pytest.fixture
def worker(
    redis_url: str, tmp_data_dir: Path, monkeypatch: pytest.MonkeyPatch, overrides: dict[str, Any]
) -> Iterator[InProcessWorker]:
    settings = Settings(
        redis_url=redis_url,
        data_dir=tmp_data_dir,
        runtime_url=BASE_URL,
        default_model="fake-model",
        lease_seconds=LEASE_SECONDS,
        lease_renew_seconds=0.2,
        max_retries=MAX_RETRIES,
        backoff_base_seconds=0.2,
        backoff_cap_seconds=2,
        stream_coalesce_ms=10,
        **{"fleet_dispatch": False, **overrides},
    )
    runtime = MockRuntime()
    # Everything the worker's context builds on the runtime's httpx client talks to the mock.
    monkeypatch.setattr("workers.context.runtime_client", lambda _settings: runtime.client())
    monkeypatch.setattr("workers.fleet_runtime.runtime_client_for", lambda *_: runtime.client())
    client = GenqClient(settings).open()  # migrates the store
    ctx = build_context(create_worker_app(settings))  # a worker's app: its transport and tasks
    yield InProcessWorker(ctx, client, runtime)
    ctx.close()
    ctx.app.close()
    client.close()


def text_of(chunks: list[Chunk]) -> str:
    """What a reader of the chunk stream ends up with (a reset drops what came before)."""
    text = ""
    for chunk in chunks:
        text = "" if chunk.type == "reset" else text + chunk.delta
    return text


def seconds_until(eta: str) -> float:
    return (datetime.fromisoformat(eta) - datetime.now(UTC)).total_seconds()


def test_a_chat_job_streams_its_tokens_and_succeeds_once(worker: InProcessWorker) -> None:
    job = worker.submit(reply_to="svc.replies", metadata={"team": "search"})
    assert worker.run(job) == "succeeded"

    done = worker.record(job)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.result is not None and done.result.text == "Hello, world!"
    assert done.result.finish_reason == "stop"
    assert done.usage is not None
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (3, 4)
    assert done.created_at <= done.started_at <= done.first_token_at <= done.finished_at  # type: ignore[operator]
    assert done.attempts == 1 and done.worker_id == worker.ctx.worker_id
    chunks = worker.chunks(job)
    assert text_of(chunks) == "Hello, world!"
    assert chunks[-1].final and chunks[-1].data is not None
    assert chunks[-1].data["status"] == "succeeded"
    assert [c.seq for c in chunks] == list(range(1, len(chunks) + 1))
    assert worker.runtime.streams[0].closed

    # A late redelivery of the same message changes nothing and emits nothing again.
    assert worker.run(job) == "skipped:succeeded"
    assert len(worker.generations()) == 1
    replies = list(worker.client.replies("svc.replies", timeout=0.1))
    assert [(r.id, r.status) for r in replies] == [(job, JobStatus.SUCCEEDED)]


@pytest.mark.parametrize("overrides", [{"default_max_tokens": 3}])
def test_a_job_without_max_tokens_stops_at_the_deployments_default(
    worker: InProcessWorker,
) -> None:
    # A small model would otherwise generate until its context is full.
    worker.runtime.tokens = tuple(f" w{i}" for i in range(50))
    job = worker.client.submit({"messages": [{"role": "user", "content": "Name three colours"}]})
    assert job.request["max_tokens"] == 3
    assert worker.run(job.id) == "succeeded"
    [asked] = worker.generations()
    assert json.loads(asked.content)["max_tokens"] == 3
    done = worker.record(job.id)
    assert done.result is not None and done.result.text == " w0 w1 w2"
    assert done.result.finish_reason == "length"
    assert done.usage is not None and done.usage.completion_tokens == 3


def test_slow_tokens_reach_the_stream_one_by_one(worker: InProcessWorker) -> None:
    # Coalescing (10 ms) must not batch 50 ms tokens together.
    tokens = tuple(f"t{i} " for i in range(10))
    worker.runtime.script.append(Stream(tokens=tokens, pace_seconds=0.05))
    job = worker.submit()
    assert worker.run(job) == "succeeded"
    deltas = [c for c in worker.chunks(job) if c.type == "delta"]
    assert "".join(c.delta for c in deltas) == "".join(tokens)
    assert len(deltas) >= 5


def test_an_embedding_job_gets_one_pooled_vector_per_input(worker: InProcessWorker) -> None:
    job = worker.client.submit({"kind": "embedding", "input": ["alpha", "beta gamma"]}).id
    assert worker.run(job) == "succeeded"
    done = worker.record(job)
    assert done.result is not None and done.result.embeddings is not None
    assert [len(v) for v in done.result.embeddings] == [8, 8]
    assert done.usage is not None and done.usage.prompt_tokens == 3
    assert worker.chunks(job)[-1].final


def test_cancel_mid_stream_keeps_the_partial_text_and_stops_the_runtime(
    worker: InProcessWorker,
) -> None:
    job = worker.submit()

    def cancel_after_three(n: int) -> None:
        if n == 3:
            assert worker.client.cancel(job).outcome == "cancelling"

    worker.runtime.on_token = cancel_after_three
    worker.runtime.script.append(ENDLESS)
    assert worker.run(job) == "cancelled"

    done = worker.record(job)
    assert done.status is JobStatus.CANCELLED
    assert done.result is not None and done.result.finish_reason == "cancelled"
    partial = done.result.text
    assert partial.startswith("t0 t1 t2 ") and len(partial) < len("".join(ENDLESS.tokens or ()))
    [stream] = worker.runtime.streams
    assert stream.closed  # closing the response is what stops a real runtime generating
    assert worker.runtime.tokens_sent == partial.count(" ") < 100
    chunks = worker.chunks(job)
    assert text_of(chunks) == partial
    assert chunks[-1].data is not None and chunks[-1].data["status"] == "cancelled"


def test_a_lost_lease_ends_the_attempt_and_leaves_the_job_to_its_new_owner(
    worker: InProcessWorker,
) -> None:
    job = worker.submit()

    def lease_lapses_after_two(n: int) -> None:
        if n == 2:  # this worker stalled: the sweep recovered the job, another worker took it
            later = utcnow() + timedelta(seconds=LEASE_SECONDS + 1)
            assert run_sweep(worker.ctx, now=later).recovered == 1
            assert worker.client.store.start(job, "other/9", lease_seconds=60) is not None

    worker.runtime.on_token = lease_lapses_after_two
    worker.runtime.script.append(ENDLESS)
    assert worker.run(job) == "lease-lost"

    after = worker.record(job)
    assert (after.status, after.worker_id, after.attempts) == (JobStatus.RUNNING, "other/9", 2)
    assert after.result is None
    assert worker.runtime.streams[0].closed
    assert worker.runtime.tokens_sent < 100
    assert not any(c.final for c in worker.chunks(job))  # the new owner writes the end


@pytest.mark.parametrize(
    ("answer", "code", "least_delay"),
    [
        (Status(503, retry_after=2), ErrorCode.RUNTIME_UNAVAILABLE, 2.0),
        (Status(429, retry_after=1), ErrorCode.RATE_LIMITED, 1.0),
        (Status(500), ErrorCode.RUNTIME_UNAVAILABLE, 0.1),
        (Stream(drop_after=2), ErrorCode.RUNTIME_UNAVAILABLE, 0.1),
        (Stream(error="CUDA error: out of memory"), ErrorCode.RUNTIME_ERROR, 0.1),
        (Raise(httpx.ReadTimeout), ErrorCode.RUNTIME_UNAVAILABLE, 0.1),
        (Raise(httpx.ConnectError), ErrorCode.RUNTIME_UNAVAILABLE, 0.1),
    ],
    ids=[
        "503-retry-after",
        "429-retry-after",
        "500",
        "dropped",
        "error-line",
        "timeout",
        "refused",
    ],
)
def test_a_transient_runtime_error_requeues_the_job_with_a_delayed_message(
    worker: InProcessWorker, answer: Stream | Status | Raise, code: ErrorCode, least_delay: float
) -> None:
    worker.runtime.script.append(answer)
    job = worker.submit()
    assert worker.run(job) == "retrying"

    queued = worker.record(job)
    assert (queued.status, queued.attempts, queued.worker_id) == (JobStatus.QUEUED, 1, None)
    assert queued.error is not None and (queued.error.code, queued.error.retryable) == (code, True)
    [retry] = [m for m in worker.messages(job) if m["headers"].get("eta")]
    # Never sooner than Retry-After, and within the backoff cap (2 s) otherwise.
    assert least_delay - 0.5 <= seconds_until(retry["headers"]["eta"]) <= max(least_delay, 2.0)

    assert worker.run(job) == "succeeded"  # the retry's delivery
    done = worker.record(job)
    assert done.attempts == 2 and done.result is not None
    assert done.result.text == "Hello, world!"
    assert text_of(worker.chunks(job)) == "Hello, world!"  # partial output was reset


@pytest.mark.parametrize(
    ("answer", "model", "code"),
    [
        (
            Status(400, message="Requested tokens (3000) exceed context window of 2048"),
            "fake-model",
            ErrorCode.CONTEXT_LENGTH_EXCEEDED,
        ),
        (None, "no-such-model", ErrorCode.MODEL_NOT_FOUND),
        (Status(401, message="invalid api key"), "fake-model", ErrorCode.UNAUTHORIZED),
        (Status(422, message="top_k must be positive"), "fake-model", ErrorCode.INVALID_REQUEST),
    ],
    ids=["context-length", "unknown-model", "unauthorized", "rejected"],
)
def test_a_permanent_runtime_error_fails_the_job_at_once(
    worker: InProcessWorker, answer: Status | None, model: str, code: ErrorCode
) -> None:
    if answer is not None:
        worker.runtime.script.append(answer)
    job = worker.submit(model=model, reply_to="svc.replies")
    assert worker.run(job) == "failed"

    done = worker.record(job)
    assert (done.status, done.attempts) == (JobStatus.FAILED, 1)
    assert done.error is not None and (done.error.code, done.error.retryable) == (code, False)
    assert [m for m in worker.messages(job) if m["headers"].get("eta")] == []  # no retry
    end = worker.chunks(job)[-1]
    assert end.data is not None and end.data["status"] == "failed"
    [reply] = worker.client.replies("svc.replies", timeout=0.1)
    assert reply.error is not None and reply.error.code == code


def test_retries_exhausted_dead_letter_the_job(worker: InProcessWorker) -> None:
    worker.runtime.script.extend([Status(503)] * (MAX_RETRIES + 1))
    job = worker.submit()
    outcomes = [worker.run(job) for _ in range(MAX_RETRIES + 1)]
    assert outcomes == ["retrying"] * MAX_RETRIES + ["dead_lettered"]

    done = worker.record(job)
    assert (done.status, done.attempts) == (JobStatus.DEAD_LETTERED, MAX_RETRIES + 1)
    assert done.error is not None and done.error.code == ErrorCode.RETRIES_EXHAUSTED
    assert "runtime_unavailable" in done.error.message
    [letter] = worker.dead_letters()
    assert (letter["job_id"], letter["reason"]) == (job, "retries_exhausted")
    assert worker.run(job) == "skipped:dead_lettered"


def test_a_job_cancelled_while_queued_never_reaches_the_runtime(worker: InProcessWorker) -> None:
    job = worker.submit()
    assert worker.client.cancel(job).outcome == "cancelled"
    assert worker.run(job) == "skipped:cancelled"
    assert worker.generations() == []


def test_a_job_past_its_deadline_expires_on_pickup(worker: InProcessWorker) -> None:
    deadline = datetime.now(UTC) + timedelta(milliseconds=200)
    job = worker.submit(deadline=deadline.isoformat())
    assert eventually(lambda: datetime.now(UTC) > deadline)
    assert worker.run(job) == "expired"
    done = worker.record(job)
    assert done.status is JobStatus.EXPIRED
    assert done.error is not None and done.error.code == ErrorCode.EXPIRED
    assert worker.generations() == []


@pytest.mark.parametrize(
    ("job_id", "outcome", "reason"),
    [
        ("not-a-uuid", "undecodable", "undecodable"),
        (None, "undecodable", "undecodable"),
        ("6f1c0b7e-0000-4000-8000-000000000000", "unknown", "unknown_job"),
    ],
    ids=["not-a-uuid", "no-id", "unknown-job"],
)
def test_a_message_for_no_job_is_dead_lettered(
    worker: InProcessWorker, job_id: object, outcome: str, reason: str
) -> None:
    assert worker.run(job_id) == outcome
    [letter] = worker.dead_letters()
    assert (letter["job_id"], letter["reason"]) == (None, reason)
    assert worker.generations() == []


@DISPATCHED
def test_a_dispatched_job_runs_with_its_slot_and_gives_it_back(worker: InProcessWorker) -> None:
    first, second = worker.submit(), worker.submit()
    slot = worker.sent_slot(first)
    assert worker.slot_tokens() == [slot["token"]]  # one slot: the second waits in the backlog
    assert worker.messages(second) == []

    assert worker.run(first, slot) == "succeeded"
    assert worker.record(first).status is JobStatus.SUCCEEDED
    # Giving the slot back released the next job, with a slot of its own.
    follow = worker.sent_slot(second)
    assert worker.slot_tokens() == [follow["token"]] != [slot["token"]]
    assert worker.run(second, follow) == "succeeded"
    assert worker.slot_tokens() == []


@DISPATCHED
def test_a_redelivery_of_a_running_job_leaves_its_slot_to_the_running_attempt(
    worker: InProcessWorker,
) -> None:
    """RabbitMQ redelivers a message as soon as its consumer's connection drops, while the
    job may still run there: the redelivery is skipped, and the slot stays the running
    attempt's (given back here, the endpoint could take one request more than its slots)."""
    job, waiting = worker.submit(), worker.submit()
    slot = worker.sent_slot(job)
    assert worker.client.store.start(job, "other/9", lease_seconds=60) is not None  # running

    assert worker.run(job, slot) == "skipped:running"
    assert worker.slot_tokens() == [slot["token"]]  # still held, by the running attempt
    assert worker.messages(waiting) == []  # so nothing else was released into it
    assert worker.ctx.fleet is not None and slot["token"] not in worker.ctx.fleet._held


@DISPATCHED
def test_a_redelivery_after_its_pool_process_died_frees_the_slot_at_once(
    worker: InProcessWorker,
) -> None:
    """A pool process killed mid-job (out of memory): Celery redelivers its message at once.
    The job waits for its lease to lapse (the sweep), but the slot is free now, so the
    runtime does not sit idle for a lease while other jobs wait."""
    job, waiting = worker.submit(), worker.submit()
    slot = worker.sent_slot(job)
    dead = f"llm-1@{worker.ctx.settings.hostname}/{_reaped_pid()}"  # a pool process, gone
    assert worker.client.store.start(job, dead, lease_seconds=60) is not None

    assert worker.run(job, slot) == "skipped:running"
    assert worker.record(job).status is JobStatus.RUNNING  # the sweep recovers it later
    assert worker.slot_tokens() == [worker.sent_slot(waiting)["token"]]  # the next job's


def _reaped_pid() -> int:
    """The pid of a process that ran and was reaped."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@DISPATCHED
def test_a_message_without_a_slot_sends_its_job_back_to_the_backlog(
    worker: InProcessWorker,
) -> None:
    """A message published straight to the broker (a producer with dispatch off, an old
    message from before the upgrade) does not run past the slots: its job joins the backlog
    at its place and is released from there."""
    busy = worker.submit()
    job = worker.submit()
    slot = worker.sent_slot(busy)
    assert worker.run(job) == "to-backlog"  # no slot: the one slot is the first job's
    assert worker.record(job).status is JobStatus.QUEUED
    assert worker.run(busy, slot) == "succeeded"
    assert worker.run(job, worker.sent_slot(job)) == "succeeded"
