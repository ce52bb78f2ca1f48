"""What follows a terminal transition: close the chunk stream, publish the reply, kick webhooks."""

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
from genq.effects import settle_effects
from genq.store import utcnow
from schemas import ErrorCode, ErrorInfo, JobRecord, JobStatus
from workers.context import WorkerContext


def after_terminal(ctx: WorkerContext, record: JobRecord, writer: ChunkWriter | None) -> None:
    """Effects of ``record`` having just reached its terminal state in this worker."""
    settle_effects(ctx.app, ctx.store, ctx.redis, ctx.settings, record, writer)


def dead_letter(
    ctx: WorkerContext,
    job_id: str | None,
    *,
    reason: str,
    message: str,
    error: ErrorInfo | None = None,
    writer: ChunkWriter | None = None,
    raw_body: bytes | None = None,
    extra_where: list[Any] | None = None,
    values: dict[str, Any] | None = None,
) -> bool:
    """Move a job (or an undecodable message) to the dead-letter queue, recording why.

    For a job, the ``dead_letters`` row commits with the transition (so an operator can always
    requeue what is dead-lettered); the broker copy and the effects follow. Returns whether
    this call moved it (False: someone else settled the job first).
    """
    error = error or ErrorInfo(code=ErrorCode.UNDECODABLE, message=message)
    letter = DeadLetterRow(
        id=str(uuid.uuid4()),
        job_id=job_id,
        reason=reason,
        error=error,
        raw_body=raw_body,
        at=utcnow(),
    )
    if job_id is None:
        record_dead_letter(ctx.store, letter, attempts=0)
        publish_dead_letter(ctx.app, letter, attempts=0)
        return True
    record = ctx.store.transition(
        job_id,
        JobStatus.DEAD_LETTERED,
        worker=ctx.worker_id,
        reason=reason,
        values={"error": error.model_dump(mode="json"), **(values or {})},
        only_worker=ctx.worker_id if writer is not None else None,
        extra_where=extra_where,
        also=lambda conn, rec: insert_dead_letter(conn, letter, attempts=rec.attempts),
    )
    if record is None:
        return False
    try:
        publish_dead_letter(ctx.app, letter, attempts=record.attempts)
    finally:
        after_terminal(ctx, record, writer)
    return True
