"""What follows a terminal transition: close the chunk stream, publish the reply, kick webhooks."""

from __future__ import annotations

import uuid

from genq.chunks import ChunkWriter
from genq.dead_letters import publish_dead_letter
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
) -> None:
    """Move a job (or an undecodable message) to the dead-letter queue, recording why."""
    error = error or ErrorInfo(code=ErrorCode.UNDECODABLE, message=message)
    record: JobRecord | None = None
    if job_id is not None:
        record = ctx.store.transition(
            job_id,
            JobStatus.DEAD_LETTERED,
            worker=ctx.worker_id,
            reason=reason,
            values={"error": error.model_dump(mode="json")},
            only_worker=ctx.worker_id if writer is not None else None,
        )
        if record is None:
            return
    publish_dead_letter(
        ctx.app,
        ctx.store,
        dead_letter_id=str(uuid.uuid4()),
        job_id=job_id,
        reason=reason,
        error=error,
        attempts=record.attempts if record else 0,
        raw_body=raw_body,
        at=utcnow(),
    )
    if record is not None:
        after_terminal(ctx, record, writer)
