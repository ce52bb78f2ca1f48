"""Edge cases of recovery found in review: lost messages, late writers, stale sweeps."""

from __future__ import annotations

from datetime import timedelta

import pytest

from genq.chunks import ChunkWriter, follow
from genq.fleet import keys as fleet_keys
from genq.store import utcnow
from schemas import JobStatus
from tasks.sweep import run_sweep
from tests.integration.conftest import Stack
from tests.support import eventually
from workers.context import build_context

pytestmark = pytest.mark.integration

CHAT = {"messages": [{"role": "user", "content": "x"}]}


@pytest.mark.parametrize("dispatch", ["direct", "fleet"])
def test_a_job_whose_message_was_lost_is_resent_by_the_sweep(stack: Stack, dispatch: str) -> None:
    # "direct": the producer's own publish (GENQ_FLEET_DISPATCH=false) is lost; "fleet" (the
    # default): the message the dispatcher released with the runtime's only slot is, and the
    # re-sent job must not wait for that slot's reservation (10 min) to lapse.
    stack.env["GENQ_FLEET_DISPATCH"] = "true" if dispatch == "fleet" else "false"
    client = stack.client()
    job = client.submit(CHAT).id
    messages = client.redis.keys("genq.interactive*")
    assert messages
    client.redis.delete(*messages)  # the message is gone
    ctx = build_context(client.app)
    assert run_sweep(ctx).redispatched == 0  # not yet due: it may just be waiting
    report = run_sweep(ctx, now=utcnow() + timedelta(minutes=11))
    assert report.redispatched == 1
    assert run_sweep(ctx, now=utcnow() + timedelta(minutes=11)).redispatched == 0  # once
    stack.worker()
    assert client.wait(job, timeout=20).status is JobStatus.SUCCEEDED
    assert eventually(lambda: client.redis.zcard(fleet_keys.slots("default")) == 0)  # none kept
    ctx.close()


def test_a_late_retry_cannot_revive_a_dead_lettered_job(stack: Stack) -> None:
    client = stack.client()
    job = client.submit(CHAT).id
    store = client.store
    assert store.start(job, "w1/1", lease_seconds=0.01) is not None
    ctx = build_context(client.app)
    report = run_sweep(ctx, now=utcnow() + timedelta(seconds=5))  # crash limit 3: recovered
    assert report.recovered == 1
    assert store.start(job, "w2/2", lease_seconds=0.01) is not None
    for _ in range(2):
        run_sweep(ctx, now=utcnow() + timedelta(seconds=5))
        store.start(job, "w3/3", lease_seconds=0.01)
    assert client.get(job).status is JobStatus.DEAD_LETTERED
    # The stalled worker now fails its attempt and tries to requeue the job for a retry.
    late = store.transition(
        job, JobStatus.QUEUED, only_worker="w3/3", only_from=frozenset({JobStatus.RUNNING})
    )
    assert late is None and client.get(job).status is JobStatus.DEAD_LETTERED
    ctx.close()


def test_a_late_writer_continues_after_the_stream_end(stack: Stack) -> None:
    client = stack.client()
    first = ChunkWriter(client.redis, "job-x", coalesce_ms=0, maxlen=1000, ttl_seconds=60)
    for word in ("a", "b", "c"):
        first.append(word)
    late = ChunkWriter(
        client.redis, "job-x", coalesce_ms=0, maxlen=1000, ttl_seconds=60, fresh=True
    )  # believes the stream is empty
    late.append("d")
    late.finish("succeeded", "stop", None)
    chunks = list(follow(client.redis, "job-x"))
    assert [c.seq for c in chunks] == [1, 2, 3, 4, 5]
    assert "".join(c.delta for c in chunks) == "abcd" and chunks[-1].final
