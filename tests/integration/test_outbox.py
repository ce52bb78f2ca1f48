"""The outbox (``genq.outbox``) against the real Redis broker and a real store, no worker
running, so every reply and webhook message it publishes stays countable in its queue."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from celery import Celery
from sqlalchemy import func, select

from genq import constants as c
from genq.outbox import Outbox, Settler, dispatch_webhooks, publish_replies
from genq.settings import Settings
from genq.store import JobStore, NewJob, build_engine, utcnow
from genq.store.migrate import upgrade_database
from genq.store.outbox import claim_replies
from genq.store.tables import webhook_events
from schemas import JobRequest, JobStatus
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


def running_job(outbox: Outbox, worker: str) -> str:
    """A job with a reply queue and a webhook, started by ``worker``."""
    job_id = str(uuid.uuid4())
    request = JobRequest(
        messages=[{"role": "user", "content": "hi"}],
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
        assert publish_replies(outbox.app, outbox.store, claim_seconds=CLAIM_SECONDS, now=now) == 0
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
        now = claimed_at + timedelta(seconds=after_seconds)
        return publish_replies(outbox.app, outbox.store, claim_seconds=CLAIM_SECONDS, now=now)

    assert sweep(CLAIM_SECONDS - 1) == 0  # still the dead publisher's
    assert replies(outbox) == 0
    assert sweep(CLAIM_SECONDS + 1) == 1
    assert sweep(2 * CLAIM_SECONDS + 2) == 0  # published: never again
    assert replies(outbox) == 1
