"""Handing deliveries to ``genq.webhooks``: against the real Redis broker, no worker running,
so every message the dispatcher sends stays countable in the queue."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from celery import Celery
from sqlalchemy import update

from genq import constants as c
from genq.celery_app import create_app
from genq.outbox import dispatch_webhooks
from genq.settings import Settings
from genq.store import JobStore, NewJob, build_engine, utcnow
from genq.store.migrate import upgrade_database
from genq.store.tables import webhook_deliveries
from genq.store.webhook_deliveries import claim_delivery
from genq.store.webhook_log import list_deliveries
from schemas import JobRequest, JobStatus

pytestmark = pytest.mark.integration

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def settings(redis_url: str, tmp_data_dir: Path) -> Settings:
    return Settings(redis_url=redis_url, data_dir=tmp_data_dir)


@pytest.fixture
def store(settings: Settings) -> Iterator[JobStore]:
    upgrade_database(settings.store_url)
    store = JobStore(build_engine(settings.store_url))
    yield store
    store.engine.dispose()


@pytest.fixture
def app(settings: Settings) -> Iterator[Celery]:
    app = create_app(settings)
    yield app
    app.close()


def queued(redis_url: str) -> int:
    with redis.Redis.from_url(redis_url) as client:
        return sum(
            int(client.llen(key))
            for key in client.keys(f"{c.WEBHOOK_QUEUE}*")
            if client.type(key) == b"list"
        )


def finished_jobs(store: JobStore, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        job_id = str(uuid.uuid4())
        request = JobRequest(**CHAT, webhook_url="http://127.0.0.1:9/hook")
        store.create(NewJob(job_id, "default", "interactive", "m", request))
        store.start(job_id, "w", 30)
        store.transition(job_id, JobStatus.SUCCEEDED, worker="w")
        ids.append(job_id)
    return ids


def test_a_delivery_is_dispatched_once_until_its_lease_lapses(
    app: Celery, store: JobStore, redis_url: str
) -> None:
    jobs = finished_jobs(store, 3)
    assert dispatch_webhooks(app, store, job_id=jobs[0]) == 1  # the worker's own
    assert dispatch_webhooks(app, store) == 2  # the sweep: only the other two
    assert dispatch_webhooks(app, store) == 0  # a second sweep: nothing
    assert queued(redis_url) == 3
    # A message lost with a dead broker: re-sent once the dispatch lease has passed.
    later = utcnow() + timedelta(seconds=c.WEBHOOK_DISPATCH_LEASE_SECONDS + 1)
    assert dispatch_webhooks(app, store, now=later) == 3
    assert queued(redis_url) == 6


def test_a_claim_that_lapses_is_dispatched_again(
    app: Celery, store: JobStore, redis_url: str
) -> None:
    [job_id] = finished_jobs(store, 1)
    [delivery] = list_deliveries(store.engine, job_id=job_id)
    assert dispatch_webhooks(app, store) == 1
    now = utcnow()
    claim = claim_delivery(store.engine, delivery.id, now, lease_seconds=5)
    assert claim is not None and claim.attempt == 1
    assert claim_delivery(store.engine, delivery.id, now, lease_seconds=5) is None
    # The worker died mid-attempt: nothing happens during the lease, then it is sent again.
    assert dispatch_webhooks(app, store, now=now + timedelta(seconds=4)) == 0
    assert dispatch_webhooks(app, store, now=now + timedelta(seconds=6)) == 1
    retry = claim_delivery(store.engine, delivery.id, now + timedelta(seconds=6), 5)
    assert retry is not None and retry.attempt == 2


def test_only_due_deliveries_are_dispatched(app: Celery, store: JobStore, redis_url: str) -> None:
    finished_jobs(store, 1)
    with store.engine.begin() as conn:
        conn.execute(
            update(webhook_deliveries).values(next_attempt_at=utcnow() + timedelta(seconds=60))
        )
    assert dispatch_webhooks(app, store) == 0
    assert dispatch_webhooks(app, store, now=utcnow() + timedelta(seconds=61)) == 1
    assert queued(redis_url) == 1
