"""Cancelling a job: a queued one never runs; a running one stops between chunks."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import Celery

from genq import constants as c
from genq.outbox import QUEUED_ONLY, Outbox, Settler
from genq.redis_keys import cancel_key
from genq.settings import Settings
from genq.store import JobStore
from schemas import JobRecord, JobStatus, NotFound


@dataclass(frozen=True)
class CancelOutcome:
    record: JobRecord
    # "cancelled" (was queued), "cancelling" (running: the worker stops it within a second),
    # or "already_<status>" for a job that had already finished: a no-op.
    outcome: str


def cancel_job(
    app: Celery,
    store: JobStore,
    client: redis.Redis,
    settings: Settings,
    job_id: str,
    *,
    tenant: str | None = None,
) -> CancelOutcome:
    record = store.get(job_id, tenant)
    if record is None:
        raise NotFound(f"no job {job_id}")
    if record.status.terminal:
        return CancelOutcome(record, f"already_{record.status.value}")
    store.request_cancel(job_id)
    client.set(cancel_key(job_id), "1", ex=c.CANCEL_FLAG_TTL_SECONDS)
    cancelled = Outbox(app, store, client, settings).settle(
        job_id,
        JobStatus.CANCELLED,
        by=Settler.ANYONE,
        worker=None,
        reason="cancelled while queued",
        only_from=QUEUED_ONLY,
    )
    if cancelled is not None:
        return CancelOutcome(cancelled, "cancelled")
    current = store.get(job_id, tenant)
    assert current is not None
    if current.status.terminal:
        return CancelOutcome(current, f"already_{current.status.value}")
    return CancelOutcome(current, "cancelling")
