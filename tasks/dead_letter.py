"""Dead-lettering from a worker or the sweep: a job (its transition, its dead letter, its
outbox) or a broker message that never decoded into one."""

from __future__ import annotations

import uuid
from typing import Any

from genq.chunks import ChunkWriter
from genq.dead_letters import (
    DeadLetterRow,
    insert_dead_letter,
    publish_dead_letter,
    record_dead_letter,
)
from genq.outbox import Settler
from genq.store import utcnow
from schemas import ErrorCode, ErrorInfo, JobStatus
from workers.context import WorkerContext


def dead_letter_message(
    ctx: WorkerContext, *, reason: str, message: str, raw_body: bytes | None = None
) -> None:
    """Record and publish a dead letter for a message that names no job we can run."""
    letter = DeadLetterRow(
        id=str(uuid.uuid4()),
        job_id=None,
        reason=reason,
        error=ErrorInfo(code=ErrorCode.UNDECODABLE, message=message),
        raw_body=raw_body,
        at=utcnow(),
    )
    record_dead_letter(ctx.store, letter, attempts=0)
    publish_dead_letter(ctx.app, letter, attempts=0)


def dead_letter_job(
    ctx: WorkerContext,
    job_id: str,
    *,
    by: Settler,
    reason: str,
    error: ErrorInfo,
    writer: ChunkWriter | None = None,
    extra_where: list[Any] | None = None,
    values: dict[str, Any] | None = None,
) -> bool:
    """Move a job to the dead-letter queue, recording why.

    The ``dead_letters`` row commits with the transition (so an operator can always requeue
    what is dead-lettered); the broker copy and the outbox's reply and event follow. Returns
    whether this call moved it (False: someone else settled the job first).
    """
    letter = DeadLetterRow(
        id=str(uuid.uuid4()), job_id=job_id, reason=reason, error=error, raw_body=None, at=utcnow()
    )
    record = ctx.store.transition(
        job_id,
        JobStatus.DEAD_LETTERED,
        worker=ctx.worker_id,
        reason=reason,
        values={"error": error.model_dump(mode="json"), **(values or {})},
        only_worker=by.only_worker(ctx.worker_id),
        extra_where=extra_where,
        also=lambda conn, rec: insert_dead_letter(conn, letter, attempts=rec.attempts),
    )
    if record is None:
        return False
    try:
        publish_dead_letter(ctx.app, letter, attempts=record.attempts)
    finally:
        ctx.outbox.publish(record, record.webhook_deliveries_queued, writer)
    return True
