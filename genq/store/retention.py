"""Retention: finished jobs and dead letters are purged after configurable ages.

Only terminal jobs are ever purged; queued and running ones are never touched. Chunk streams
expire on their own (Redis TTL).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, delete, select

from genq.store.tables import (
    dead_letters,
    job_history,
    jobs,
    reply_outbox,
    webhook_attempts,
    webhook_deliveries,
    webhook_events,
)
from schemas import JobStatus

FINISHED = [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED]
BATCH = 500


def purge_expired(
    engine: Engine,
    *,
    now: datetime,
    finished_after_seconds: float,
    dead_letter_after_seconds: float,
) -> tuple[int, list[str]]:
    """Delete old finished jobs and old dead letters (with their jobs).

    Returns ``(jobs_purged, dead_letter_ids_purged)``; the caller removes the broker copies.
    """
    finished_cutoff = now - timedelta(seconds=finished_after_seconds)
    dead_cutoff = now - timedelta(seconds=dead_letter_after_seconds)
    with engine.begin() as conn:
        old_jobs = [
            row[0]
            for row in conn.execute(
                select(jobs.c.id)
                .where(
                    jobs.c.status.in_([s.value for s in FINISHED]),
                    jobs.c.finished_at < finished_cutoff,
                )
                .limit(BATCH)
            ).all()
        ]
        letters = conn.execute(
            select(dead_letters.c.id, dead_letters.c.job_id)
            .where(dead_letters.c.created_at < dead_cutoff)
            .limit(BATCH)
        ).all()
        letter_ids = [row[0] for row in letters]
        dead_jobs = [
            row[0]
            for row in conn.execute(
                select(jobs.c.id).where(
                    jobs.c.id.in_([row[1] for row in letters if row[1]]),
                    jobs.c.status == JobStatus.DEAD_LETTERED.value,
                    jobs.c.finished_at < dead_cutoff,  # not one dead-lettered again recently
                )
            ).all()
        ]
        if letter_ids:
            conn.execute(delete(dead_letters).where(dead_letters.c.id.in_(letter_ids)))
        _delete_jobs(conn, old_jobs + dead_jobs)
    return len(old_jobs) + len(dead_jobs), letter_ids


def _delete_jobs(conn: Connection, job_ids: list[str]) -> None:
    if not job_ids:
        return
    events = select(webhook_events.c.id).where(webhook_events.c.job_id.in_(job_ids))
    deliveries = select(webhook_deliveries.c.id).where(webhook_deliveries.c.event_id.in_(events))
    conn.execute(delete(webhook_attempts).where(webhook_attempts.c.delivery_id.in_(deliveries)))
    conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.event_id.in_(events)))
    conn.execute(delete(webhook_events).where(webhook_events.c.job_id.in_(job_ids)))
    conn.execute(delete(reply_outbox).where(reply_outbox.c.job_id.in_(job_ids)))
    conn.execute(delete(job_history).where(job_history.c.job_id.in_(job_ids)))
    conn.execute(delete(jobs).where(jobs.c.id.in_(job_ids)))


def delete_finished_job(engine: Engine, job_id: str, tenant: str | None) -> bool:
    """Delete one finished job (within ``tenant``, unless None) with its history, outbox and
    webhook rows, as retention would; False if there is no such finished job. A queued,
    running or dead-lettered job is never deleted (an operator holds a dead letter)."""
    query = select(jobs.c.id).where(
        jobs.c.id == job_id, jobs.c.status.in_([s.value for s in FINISHED])
    )
    if tenant is not None:
        query = query.where(jobs.c.tenant == tenant)
    with engine.begin() as conn:
        if conn.execute(query).first() is None:
            return False
        _delete_jobs(conn, [job_id])
    return True
