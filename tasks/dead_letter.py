"""Dead-lettering from a worker or the sweep: a job (its transition, its dead letter, its
outbox) or a broker message that never decoded into one."""

from __future__ import annotations

import uuid

from genq.chunks import ChunkWriter
from genq.dead_letters import DeadLetterRow, publish_dead_letter, record_dead_letter
from genq.outbox import Settler
from genq.store import LapsedLease, utcnow
from schemas import ErrorCode, ErrorInfo
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
    lapsed: LapsedLease | None = None,
) -> bool:
    """Move a job to the dead-letter queue, recording why.

    The ``dead_letters`` row commits with the transition (so an operator can always requeue
    what is dead-lettered); the broker copy and the outbox's reply and event follow. The sweep
    passes the ``lapsed`` lease it found, re-checked by the move. Returns whether this call
    moved it (False: someone else settled the job first).
    """
    letter = DeadLetterRow(
        id=str(uuid.uuid4()), job_id=job_id, reason=reason, error=error, raw_body=None, at=utcnow()
    )
    moved = ctx.store.dead_letter(
        letter, worker=ctx.worker_id, holder=by.only_worker(ctx.worker_id), lapsed=lapsed
    )
    if moved is None:
        return False
    try:
        publish_dead_letter(ctx.app, letter, attempts=moved.record.attempts)
    finally:
        ctx.outbox.publish(moved, writer)
    return True
