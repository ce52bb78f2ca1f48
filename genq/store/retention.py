"""Retention: finished jobs and dead letters are purged after configurable ages, and so are
final batches (with their lines, their lines' jobs and their events) and files.

Only terminal jobs are ever purged; queued and running ones are never touched. A batch line's
job is kept as long as its batch (its ``batch_lines`` row), so a batch never reads a line's job
as missing; it goes with its batch. Chunk streams expire on their own (Redis TTL).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, Select, delete, exists, select

from genq.store.batches import FINAL as FINAL_BATCH
from genq.store.engine import reader
from genq.store.files import PROCESSED
from genq.store.tables import (
    batch_lines,
    batches,
    dead_letters,
    file_chunks,
    files,
    job_history,
    jobs,
    reply_outbox,
    webhook_attempts,
    webhook_deliveries,
    webhook_events,
)
from schemas import Conflict, JobStatus

FINISHED = [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED]
BATCH = 500
# The stable code of a refusal to delete a line's job while its batch runs.
BATCH_NOT_FINISHED = "batch_not_finished"
# Batches and files looked at per pass: a file is up to 200 rows of 1 MiB.
BATCHES_PER_PASS = 10
FILES_PER_PASS = 20
# Whether a job is a line of a batch still kept: it is kept with it.
IN_A_BATCH = exists().where(batch_lines.c.job_id == jobs.c.id)


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
                    ~IN_A_BATCH,
                )
                .limit(BATCH)
            ).all()
        ]
        held = exists().where(batch_lines.c.job_id == dead_letters.c.job_id)
        letters = conn.execute(
            select(dead_letters.c.id, dead_letters.c.job_id)
            .where(dead_letters.c.created_at < dead_cutoff, ~held)
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


def purge_batches_and_files(
    engine: Engine, *, now: datetime, finished_after_seconds: float
) -> tuple[int, int]:
    """Delete batches final for longer than ``finished_after_seconds`` (their lines and
    finished line jobs ``BATCH`` at a time, then the batch and its events), then complete files
    older than that which no batch still needs (an active batch's input, a kept batch's
    output); ``(batches_purged, files_purged)``. A line job not finished (dead-lettered, or
    requeued since) outlives its batch as a job of its own, under its own retention."""
    cutoff = now - timedelta(seconds=finished_after_seconds)
    old = (
        select(batches.c.id)
        .where(batches.c.status.in_(FINAL_BATCH), batches.c.updated_at < cutoff)
        .limit(BATCHES_PER_PASS)
    )
    purged = 0
    with reader(engine).connect() as conn:
        old_ids = list(conn.execute(old).scalars())
    for batch_id in old_ids:
        purged += _purge_batch(engine, batch_id)
    return purged, _purge_files(engine, cutoff)


def _purge_batch(engine: Engine, batch_id: str) -> int:
    """One transaction of the batch's lines, then (once none is left) the batch: 1 if gone."""
    while True:
        with engine.begin() as conn:
            lines = (
                select(batch_lines.c.line)
                .where(batch_lines.c.batch_id == batch_id)
                .order_by(batch_lines.c.line)
                .limit(BATCH)
            )
            numbers = list(conn.execute(lines).scalars())
            if not numbers:
                _delete_events(conn, [batch_id])
                conn.execute(delete(batches).where(batches.c.id == batch_id))
                return 1
            these = (batch_lines.c.batch_id == batch_id, batch_lines.c.line.in_(numbers))
            line_jobs = select(batch_lines.c.job_id).where(*these)
            finished = select(jobs.c.id).where(
                jobs.c.id.in_(line_jobs), jobs.c.status.in_([s.value for s in FINISHED])
            )
            _delete_jobs(conn, list(conn.execute(finished).scalars()))
            conn.execute(delete(batch_lines).where(*these))


def _purge_files(engine: Engine, cutoff: datetime) -> int:
    active = select(batches.c.input_file_id).where(~batches.c.status.in_(FINAL_BATCH))
    outputs = select(batches.c.output_file_id).where(batches.c.output_file_id.is_not(None))
    errors = select(batches.c.error_file_id).where(batches.c.error_file_id.is_not(None))
    old = (
        select(files.c.id)
        .where(
            files.c.status == PROCESSED,
            files.c.created_at < cutoff,
            files.c.id.not_in(active),
            files.c.id.not_in(outputs),
            files.c.id.not_in(errors),
        )
        .limit(FILES_PER_PASS)
    )
    with reader(engine).connect() as conn:
        file_ids = list(conn.execute(old).scalars())
    for file_id in file_ids:
        with engine.begin() as conn:
            conn.execute(delete(file_chunks).where(file_chunks.c.file_id == file_id))
            conn.execute(delete(files).where(files.c.id == file_id))
    return len(file_ids)


def _delete_events(conn: Connection, subject_ids: list[str] | Select[tuple[str]]) -> None:
    """The webhook events of these jobs (or batches), with their deliveries and attempts."""
    events = select(webhook_events.c.id).where(webhook_events.c.job_id.in_(subject_ids))
    deliveries = select(webhook_deliveries.c.id).where(webhook_deliveries.c.event_id.in_(events))
    conn.execute(delete(webhook_attempts).where(webhook_attempts.c.delivery_id.in_(deliveries)))
    conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.event_id.in_(events)))
    conn.execute(delete(webhook_events).where(webhook_events.c.job_id.in_(subject_ids)))


def _delete_jobs(conn: Connection, job_ids: list[str]) -> None:
    if not job_ids:
        return
    _delete_events(conn, job_ids)
    conn.execute(delete(reply_outbox).where(reply_outbox.c.job_id.in_(job_ids)))
    conn.execute(delete(job_history).where(job_history.c.job_id.in_(job_ids)))
    conn.execute(delete(jobs).where(jobs.c.id.in_(job_ids)))


def delete_finished_job(engine: Engine, job_id: str, tenant: str | None) -> bool:
    """Delete one finished job (within ``tenant``, unless None) with its history, outbox and
    webhook rows, as retention would; False if there is no such finished job. A queued,
    running or dead-lettered job is never deleted (an operator holds a dead letter), nor a
    line of a batch that is not final yet (``Conflict``, ``batch_not_finished``)."""
    query = select(jobs.c.id).where(
        jobs.c.id == job_id, jobs.c.status.in_([s.value for s in FINISHED])
    )
    if tenant is not None:
        query = query.where(jobs.c.tenant == tenant)
    with engine.begin() as conn:
        if conn.execute(query).first() is None:
            return False
        _refuse_a_line_of_an_open_batch(conn, job_id)
        _delete_jobs(conn, [job_id])
    return True


def _refuse_a_line_of_an_open_batch(conn: Connection, job_id: str) -> None:
    """A line's job is part of its batch's output until the batch is final: deleting it
    would leave the output without that line (a 409, ``details[0].code``
    ``batch_not_finished``)."""
    query = (
        select(batches.c.id, batches.c.status)
        .join(batch_lines, batch_lines.c.batch_id == batches.c.id)
        .where(batch_lines.c.job_id == job_id, batches.c.status.not_in(FINAL_BATCH))
    )
    open_batch = conn.execute(query).first()
    if open_batch is None:
        return
    batch_id, status = open_batch
    raise Conflict(
        f"job {job_id} is a line of batch {batch_id}, which is {status}: it can be deleted "
        "once the batch is final (its output file then holds the line)",
        details=[
            {"code": BATCH_NOT_FINISHED, "field": "id", "batch_id": batch_id, "status": status}
        ],
    )
