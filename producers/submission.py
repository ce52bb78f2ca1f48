"""Accepting a job: validate, store it as queued, hand it to the broker — or refuse it whole."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any, Protocol

from celery import Celery

from genq.dispatch import enqueue_records, send_record
from genq.fleet.config import fleet_dispatch
from genq.settings import Settings
from genq.store import JobStore, NewJob
from schemas import BrokerUnavailable, InvalidRequest, JobKind, JobRecord, JobRequest

log = logging.getLogger(__name__)


class WebhookCheck(Protocol):
    """Called with the job's webhook URL and its own secret (None without one) before the job
    is stored; raises InvalidRequest to refuse it. ``producers.webhooks.webhook_submit_check``
    builds genq's (SSRF guard + "some secret must sign it")."""

    def __call__(self, url: str, secret: str | None = None, /) -> None: ...


def resolve_lane(settings: Settings, request: JobRequest) -> str:
    lane = request.lane or settings.default_lane
    if lane not in settings.lanes:
        raise InvalidRequest(
            f"unknown lane {lane!r}; this deployment has {', '.join(settings.lanes)}",
            details=[{"field": "lane", "message": f"must be one of {settings.lanes}"}],
        )
    return lane


def new_job(
    settings: Settings,
    request: JobRequest,
    tenant: str,
    *,
    job_id: str | None = None,
    webhook_check: WebhookCheck | None = None,
) -> NewJob:
    """The row to store for ``request``: its lane, model and ``max_tokens`` resolved, its
    webhook checked. Raises ``InvalidRequest`` for a job that must not be accepted."""
    lane = resolve_lane(settings, request)
    if request.webhook_url is not None and webhook_check is not None:
        webhook_check(str(request.webhook_url), request.webhook_secret)
    model = request.model or settings.default_model
    if request.max_tokens is None and request.kind is not JobKind.EMBEDDING:
        request = request.model_copy(update={"max_tokens": settings.default_max_tokens})
    return NewJob(job_id or str(uuid.uuid4()), tenant, lane, model, request)


# Messages per pipelined broker round trip when publishing a batch of stored jobs.
PUBLISH_BATCH_SIZE = 200


def publish_stored(
    app: Celery, store: JobStore, settings: Settings, records: list[JobRecord]
) -> tuple[int, BrokerUnavailable | None]:
    """Publish stored jobs in order over one broker connection, ``PUBLISH_BATCH_SIZE`` to a
    pipelined round trip. Returns how many were accepted and, if the broker failed, its error;
    the jobs not accepted are removed from the store again, so ``records[:accepted]`` is
    exactly what was accepted.

    A failed round trip leaves its group's delivery unknown (Redis may have run part of it), so
    the group is published again one message at a time: a job delivered twice still runs once.
    If the broker fails again, the group stays accepted (it may be in the queue, and a job
    in the queue must be in the store); the sweep re-sends any of it that is not.
    """
    accepted = 0
    try:
        with app.producer_or_acquire() as producer:
            # False: each publish goes out at once (the fleet's backlog takes a batch either way)
            batches = producer.supports_batch_publish or fleet_dispatch(settings)
            for start in range(0, len(records), PUBLISH_BATCH_SIZE):
                group = records[start : start + PUBLISH_BATCH_SIZE]
                if not batches:
                    for sent in _publish_each(app, settings, producer, group):
                        accepted = start + sent
                elif not _publish_batch(app, settings, producer, group):
                    accepted = start + len(group)  # maybe queued already: accepted, whatever next
                    for _ in _publish_each(app, settings, producer, group):
                        pass
                accepted = start + len(group)
    except BrokerUnavailable as exc:
        store.delete_many([r.id for r in records[accepted:]])
        return accepted, exc
    return accepted, None


def _publish_batch(app: Celery, settings: Settings, producer: Any, group: list[JobRecord]) -> bool:
    """Publish ``group`` in one pipelined round trip. False: the round trip failed and what it
    delivered is unknown. ``BrokerUnavailable``: nothing of ``group`` was sent."""
    try:
        if fleet_dispatch(settings):  # into the fleet's backlog, which publishes what can start
            enqueue_records(app, settings, group)
            return True
        with producer.batch(max_size=2 * len(group) + 1):  # flushed once, on leaving
            for _ in _publish_each(app, settings, producer, group):
                pass
    except BrokerUnavailable:
        raise
    except Exception:
        log.warning("a pipelined publish of %d jobs failed; sending them one by one", len(group))
        return False
    return True


def _publish_each(
    app: Celery, settings: Settings, producer: Any, group: list[JobRecord]
) -> Iterator[int]:
    """Publish the records in order, yielding how many have gone so far; a lane's queue is
    declared with its first message only."""
    declared: set[str] = set()
    for sent, record in enumerate(group, 1):
        send_record(app, settings, record, producer=producer, declare=record.lane not in declared)
        declared.add(record.lane)
        yield sent


def submit_job(
    app: Celery,
    store: JobStore,
    settings: Settings,
    request: JobRequest,
    *,
    tenant: str = "default",
    job_id: str | None = None,
    webhook_check: WebhookCheck | None = None,
) -> tuple[JobRecord, bool]:
    """Store and enqueue ``request``. Returns ``(record, created)``; a replayed idempotency key
    returns the original job with ``created=False``. Nothing is enqueued for a bad request,
    and a job the broker refused is removed, so an accepted job is always a queued one."""
    new = new_job(settings, request, tenant, job_id=job_id, webhook_check=webhook_check)
    record, created = store.create(new)
    if not created:
        return record, False
    try:
        send_record(app, settings, record)
    except BrokerUnavailable:
        store.delete(record.id)
        raise
    return record, True


def submit_many(
    app: Celery,
    store: JobStore,
    settings: Settings,
    requests: list[JobRequest],
    *,
    tenant: str = "default",
    webhook_check: WebhookCheck | None = None,
) -> list[JobRecord]:
    """Accept a batch: every request is checked first (one bad request accepts none), the jobs
    are stored in one transaction and published over one broker connection. Jobs the broker
    refused are removed again, so what is returned is exactly what was accepted."""
    batch = [new_job(settings, r, tenant, webhook_check=webhook_check) for r in requests]
    records = store.create_many(batch)
    sent, error = publish_stored(app, store, settings, records)
    if error is not None:
        accepted = [r.id for r in records[:sent]]
        raise BrokerUnavailable(
            f"the broker failed after {sent} of {len(records)} jobs; those {sent} were accepted "
            "(their ids are in details), the rest were not",
            details=[{"accepted": accepted}],
        ) from error
    return records
