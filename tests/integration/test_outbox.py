"""The outbox (``genq.outbox``) against the real Redis broker and a real store, no worker
running, so every reply and webhook message it publishes stays countable in its queue."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis
from celery import Celery
from sqlalchemy import func, select

from genq import constants as c
from genq.outbox import Outbox, Settler, dispatch_webhooks, publish_replies, reply_queue
from genq.redis_keys import reply_sent_key
from genq.settings import Settings
from genq.store import JobStore, NewJob, build_engine, utcnow
from genq.store.migrate import upgrade_database
from genq.store.outbox import PendingReply, claim_replies
from genq.store.tables import webhook_events
from producers import GenqClient
from schemas import JobRecord, JobRequest, JobStatus
from workers.app import create_app

pytestmark = pytest.mark.integration

REPLIES = "outbox.replies"
CLAIM_SECONDS = 30.0


@pytest.fixture
def outbox(redis_url: str, tmp_data_dir: Path) -> Iterator[Outbox]:
    settings = Settings(
        redis_url=redis_url, data_dir=tmp_data_dir, reply_claim_seconds=CLAIM_SECONDS
    )
    upgrade_database(settings.store_url)
    store = JobStore(build_engine(settings.store_url))
    app: Celery = create_app(settings)
    client = redis.Redis.from_url(redis_url)
    yield Outbox(app, store, client, settings)
    client.close()
    app.close()
    store.engine.dispose()


def running_job(outbox: Outbox, worker: str, content: str = "hi") -> str:
    """A job with a reply queue and a webhook, started by ``worker``."""
    job_id = str(uuid.uuid4())
    request = JobRequest(
        messages=[{"role": "user", "content": content}],
        reply_to=REPLIES,
        webhook_url="http://127.0.0.1:9/hook",
    )
    outbox.store.create(NewJob(job_id, "default", "interactive", "m", request))
    assert outbox.store.start(job_id, worker, 30) is not None
    return job_id


def replies(outbox: Outbox) -> int:
    return int(outbox.redis.llen(REPLIES))


def webhook_messages(outbox: Outbox) -> int:
    return sum(
        int(outbox.redis.llen(key))
        for key in outbox.redis.keys(f"{c.WEBHOOK_QUEUE}*")
        if outbox.redis.type(key) == b"list"
    )


def events(outbox: Outbox, job_id: str) -> int:
    with outbox.store.engine.connect() as conn:
        query = select(func.count()).where(webhook_events.c.job_id == job_id)
        return int(conn.execute(query).scalar_one())


def sweep_replies(outbox: Outbox, now: datetime) -> int:
    """What the sweep does with the outbox's replies at ``now``: how many went out."""
    return publish_replies(outbox.replies, outbox.store, claim_seconds=CLAIM_SECONDS, now=now)


def settled_and_claimed(outbox: Outbox, job_id: str, worker: str) -> tuple[PendingReply, datetime]:
    """``worker`` settles its job and claims the reply that wrote (not yet published)."""
    assert outbox.store.transition(job_id, JobStatus.SUCCEEDED, only_worker=worker) is not None
    claimed_at = utcnow()
    [claimed] = claim_replies(
        outbox.store.engine, claimed_at, claim_seconds=CLAIM_SECONDS, job_id=job_id
    )
    return claimed, claimed_at


def succeed(outbox: Outbox, job_id: str, worker: str | None) -> bool:
    """``worker`` settles the job it believes it holds; whether it did."""
    record = outbox.settle(
        job_id, JobStatus.SUCCEEDED, by=Settler.LEASE_HOLDER, worker=worker, reason="completed"
    )
    return record is not None


def test_a_worker_that_lost_its_lease_does_not_publish_and_the_holder_does(
    outbox: Outbox,
) -> None:
    job_id = running_job(outbox, "w1/1")
    # w1's lease lapsed: the sweep requeued the job and w2 started it.
    recovered = outbox.store.transition(
        job_id,
        JobStatus.QUEUED,
        only_from=frozenset({JobStatus.RUNNING}),
        values={"worker_id": None},
    )
    assert recovered is not None
    assert outbox.store.start(job_id, "w2/1", 30) is not None

    assert not succeed(outbox, job_id, "w1/1")
    assert (replies(outbox), webhook_messages(outbox), events(outbox, job_id)) == (0, 0, 0)
    record = outbox.store.get(job_id)
    assert record is not None and record.status is JobStatus.RUNNING

    assert succeed(outbox, job_id, "w2/1")
    assert (replies(outbox), webhook_messages(outbox), events(outbox, job_id)) == (1, 1, 1)
    # Anyone else settling it now finds it settled: nothing more goes out.
    cancelled = outbox.settle(
        job_id, JobStatus.CANCELLED, by=Settler.ANYONE, worker=None, reason="cancel"
    )
    assert cancelled is None
    assert (replies(outbox), webhook_messages(outbox), events(outbox, job_id)) == (1, 1, 1)


def test_a_lease_holder_is_a_worker() -> None:
    assert Settler.LEASE_HOLDER.only_worker("w1/1") == "w1/1"
    assert Settler.ANYONE.only_worker("w1/1") is None
    with pytest.raises(ValueError, match="lease holder"):
        Settler.LEASE_HOLDER.only_worker(None)


def test_duplicate_terminal_attempts_publish_one_reply_and_one_event(outbox: Outbox) -> None:
    job_id = running_job(outbox, "w1/1")
    # Redelivered copies of the job's message all settling it at once.
    with ThreadPoolExecutor(6) as pool:
        settled = list(pool.map(lambda _: succeed(outbox, job_id, "w1/1"), range(6)))
    assert sum(settled) == 1
    assert (replies(outbox), webhook_messages(outbox), events(outbox, job_id)) == (1, 1, 1)
    # The sweep finds nothing left to publish, now or once every claim has lapsed.
    later = utcnow() + timedelta(seconds=CLAIM_SECONDS + c.WEBHOOK_DISPATCH_LEASE_SECONDS)
    for now in (utcnow(), later):
        assert sweep_replies(outbox, now) == 0
    assert dispatch_webhooks(outbox.app, outbox.store) == 0
    assert replies(outbox) == 1


def test_a_dead_publishers_reply_is_published_by_the_sweep_once_its_claim_lapses(
    outbox: Outbox,
) -> None:
    job_id = running_job(outbox, "w1/1")
    # The worker committed the transition, claimed the reply and died before publishing.
    settled = outbox.store.transition(job_id, JobStatus.SUCCEEDED, only_worker="w1/1")
    assert settled is not None
    claimed_at = utcnow()
    [claimed] = claim_replies(
        outbox.store.engine, claimed_at, claim_seconds=CLAIM_SECONDS, job_id=job_id
    )
    assert claimed.job_id == job_id and claimed.queue == REPLIES

    def sweep(after_seconds: float) -> int:
        return sweep_replies(outbox, claimed_at + timedelta(seconds=after_seconds))

    assert sweep(CLAIM_SECONDS - 1) == 0  # still the dead publisher's
    assert replies(outbox) == 0
    assert sweep(CLAIM_SECONDS + 1) == 1
    assert sweep(2 * CLAIM_SECONDS + 2) == 0  # published: never again
    assert replies(outbox) == 1


def test_a_reply_sent_by_a_publisher_killed_before_recording_it_is_not_sent_again(
    outbox: Outbox,
) -> None:
    job_id = running_job(outbox, "w1/1")
    # The worker settled the job, claimed its reply, pushed it to the queue and was killed
    # (kill -9) before it could record the reply published.
    claimed, claimed_at = settled_and_claimed(outbox, job_id, "w1/1")
    assert outbox.replies.publish(claimed)
    assert replies(outbox) == 1

    # Once the claim lapsed the sweep takes the reply over: it goes out no second time, and
    # it is recorded, so no later sweep claims it again.
    assert sweep_replies(outbox, claimed_at + timedelta(seconds=CLAIM_SECONDS + 1)) == 0
    assert replies(outbox) == 1
    assert claim_replies(outbox.store.engine, utcnow() + timedelta(days=2), claim_seconds=1) == []
    [raw] = outbox.redis.lrange(REPLIES, 0, -1)
    assert json.loads(raw)["headers"] == {"genq-job-id": job_id}


def test_publishers_racing_on_one_reply_send_it_once(outbox: Outbox) -> None:
    job_id = running_job(outbox, "w1/1")
    stalled, claimed_at = settled_and_claimed(outbox, job_id, "w1/1")
    # Its publisher stalls past its claim: the sweep takes the reply over and sends it ...
    assert sweep_replies(outbox, claimed_at + timedelta(seconds=CLAIM_SECONDS + 1)) == 1
    # ... then the stalled publisher goes on, alongside others holding the same claim.
    with ThreadPoolExecutor(6) as pool:
        pushed = list(pool.map(lambda _: outbox.replies.publish(stalled), range(6)))
    assert pushed == [False] * 6
    assert replies(outbox) == 1


def test_each_terminal_transition_of_a_requeued_job_sends_its_own_reply(outbox: Outbox) -> None:
    job_id = running_job(outbox, "w1/1")
    dead = outbox.settle(
        job_id, JobStatus.DEAD_LETTERED, by=Settler.LEASE_HOLDER, worker="w1/1", reason="x"
    )
    assert dead is not None and replies(outbox) == 1
    assert outbox.store.requeue_dead_lettered(job_id, operator="test") is not None
    assert outbox.store.start(job_id, "w2/1", 30) is not None
    assert succeed(outbox, job_id, "w2/1")
    sent = [json.loads(raw) for raw in reversed(outbox.redis.lrange(REPLIES, 0, -1))]
    assert [m["headers"] for m in sent] == [{"genq-job-id": job_id}] * 2
    statuses = [json.loads(base64.b64decode(m["body"]))["status"] for m in sent]
    assert statuses == ["dead_lettered", "succeeded"]


def test_a_reply_is_the_message_kombus_producer_would_push(outbox: Outbox) -> None:
    """docs/replies.md's wire format: genq pushes kombu's envelope itself (to push it once),
    byte for byte as kombu's producer writes it, and a kombu consumer reads it back."""
    job_id = running_job(outbox, "w1/1", content='héllo ☃ "quoted"')
    claimed, _ = settled_and_claimed(outbox, job_id, "w1/1")
    with outbox.app.producer_pool.acquire(block=True) as producer:
        producer.publish(
            claimed.payload,
            exchange="",
            routing_key=REPLIES,
            serializer="json",
            declare=[reply_queue(REPLIES)],
            delivery_mode=2,
            headers={"genq-job-id": job_id},
        )
    by_kombu = outbox.redis.rpop(REPLIES)
    assert outbox.replies.publish(claimed)
    [by_genq] = outbox.redis.lrange(REPLIES, 0, -1)

    def tag(raw: bytes) -> bytes:
        return str(json.loads(raw)["properties"]["delivery_tag"]).encode()

    assert isinstance(by_kombu, bytes) and isinstance(by_genq, bytes)
    assert tag(by_genq) != tag(by_kombu)
    assert by_genq.replace(tag(by_genq), tag(by_kombu)) == by_kombu
    # Nothing else in Redis but the queue and the reply's marker, which expires.
    marker = reply_sent_key(job_id, claimed.id)
    assert set(outbox.redis.keys("*")) == {REPLIES.encode(), marker.encode()}
    assert 0 < int(outbox.redis.ttl(marker)) <= c.REPLY_SENT_MARKER_SECONDS

    with GenqClient(outbox.settings) as client:
        got = list(client.replies(REPLIES, timeout=0.5))
    assert got == [JobRecord.model_validate(claimed.payload)]
    assert got[0].id == job_id and got[0].status is JobStatus.SUCCEEDED
    assert outbox.redis.llen(REPLIES) == 0
