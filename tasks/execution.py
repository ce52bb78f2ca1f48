"""One attempt of one job: claim it, run it against the runtime, settle its state.

The Celery tasks in ``tasks.generate`` only decode their message and call ``run_job``.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from genq.chunks import ChunkWriter
from genq.dispatch import send_record
from genq.fleet.dispatcher import FORCED, UNKNOWN_MODEL
from genq.logs import bind_job_context
from genq.outbox import Settler
from genq.store import utcnow
from schemas import (
    ErrorCode,
    ErrorInfo,
    GenqError,
    JobKind,
    JobRecord,
    JobRequest,
    JobStatus,
    PermanentError,
    TransientError,
    Usage,
)
from schemas.validation import parse
from tasks.dead_letter import dead_letter_job, dead_letter_message
from tasks.retry_policy import Outcome, decide
from workers.context import WorkerContext
from workers.fleet_runtime import AttemptNotes, FleetSide, Slot
from workers.lease import Lease
from workers.runtimes import Runtime, StreamEvent

log = logging.getLogger(__name__)


class LeaseLost(GenqError):
    """The sweep gave this job to someone else; stop without touching its state."""


@dataclass
class Generation:
    parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    cancelled: bool = False
    chunks_seen: int = 0
    first_token_at: datetime | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)


def run_job(ctx: WorkerContext, job_id: object, slot: object = None) -> str:
    """Run one delivery of ``job_id``; returns what happened, for logs and tests. ``slot``:
    the fleet slot the dispatcher holds for it (``workers.fleet_runtime.Slot``)."""
    if not isinstance(job_id, str) or not _is_uuid(job_id):
        dead_letter_message(ctx, reason="undecodable", message=f"job id {job_id!r} is not a UUID")
        return "undecodable"
    if ctx.fleet is not None:
        return _run_in_fleet(ctx, ctx.fleet, job_id, Slot.from_message(slot))
    if not ctx.runtime_gate.wait_until_answering():
        log.warning(
            "runtime unreachable for %g s: trying job %s anyway",
            ctx.settings.runtime_wait_seconds,
            job_id,
        )
    record = ctx.store.start(job_id, ctx.worker_id, ctx.settings.lease_seconds)
    if record is not None:
        return _attempt(ctx, record)
    return _not_started(ctx, job_id)  # the rare path: find out why the CAS did not match


def _run_in_fleet(ctx: WorkerContext, fleet: FleetSide, job_id: str, slot: Slot | None) -> str:
    """Run a job the fleet's dispatcher released with ``slot`` (docs/fleet.md). The job never
    waits here for a busy endpoint: it came with a slot, or goes back to its place in the
    backlog (a message sent straight to the broker; a slot whose lease lapsed meanwhile)."""
    held, waiting = (False, None)
    if slot is not None and slot.endpoint != FORCED:
        held, waiting = fleet.hold(slot, job_id)
    if slot is None or (slot.endpoint != FORCED and not held):
        record = ctx.store.get(job_id)
        if record is None or record.status is not JobStatus.QUEUED:
            return _not_started(ctx, job_id)
        send_record(ctx.app, ctx.settings, record)  # into the backlog, at its rank
        return "to-backlog"
    outcome = "skipped"
    try:
        record = ctx.store.start(job_id, ctx.worker_id, ctx.settings.lease_seconds)
        if record is None:
            outcome = _not_started(ctx, job_id)
            return outcome
        if slot.endpoint == FORCED:
            outcome = _attempt(ctx, record, failure=_unserved(ctx, record, slot))
            return outcome
        runtime = fleet.runtime(slot.endpoint)
        if runtime is None:
            gone = TransientError(f"endpoint {slot.endpoint} left the fleet; retry later")
            outcome = _attempt(ctx, record, failure=gone)
            return outcome
        started = record

        def runtime_done(notes: AttemptNotes) -> None:
            # The endpoint is free once its answer ended: give the slot back, say how it went
            # and let the next job go, then settle this one's result in the store.
            fleet.finish(
                slot,
                job_id=job_id,
                tenant=started.tenant,
                model=started.model,
                notes=notes,
                estimate=waiting.estimate if waiting is not None else 0.0,
            )

        outcome = _attempt(ctx, record, runtime=runtime, notes=AttemptNotes(on_done=runtime_done))
        return outcome
    finally:
        if outcome in _FINISHED or (outcome.startswith("skipped:") and outcome not in _LIVE):
            fleet.forget_later(job_id)
        if slot.endpoint == FORCED:
            pass
        elif outcome in _LIVE and not _holder_gone(ctx, job_id):
            # A redelivery (RabbitMQ redelivers when a consumer's connection drops) of a job
            # that runs elsewhere under a live lease: the slot is that attempt's; giving it back
            # here would let the endpoint take one request more than its slots.
            fleet.let_go(slot)
        else:
            fleet.release(slot)  # a no-op once given back


def _holder_gone(ctx: WorkerContext, job_id: str) -> bool:
    """Whether the job's lease is held by a process of this host that no longer exists: a pool
    process killed mid-job (out of memory, a crash), whose message Celery redelivers at once.
    Its slot is free then (the job itself waits for its lease to lapse and the sweep)."""
    record = ctx.store.get(job_id)
    holder = record.worker_id if record is not None else None
    node, _, pid = (holder or "").rpartition("/")
    if node.partition("@")[2] != ctx.settings.hostname or not pid.isdigit():
        return False  # another host's (or no) holder: cannot tell from here
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _unserved(ctx: WorkerContext, record: JobRecord, slot: Slot) -> GenqError:
    """Why a job released without a slot cannot run: no endpoint serves its model at all
    (permanent), or none that does is healthy (it waited; retry rules apply)."""
    if slot.reason == UNKNOWN_MODEL:
        return PermanentError(
            f"no runtime endpoint serves model {record.model!r}; `genq runtimes` lists the "
            "fleet's models",
            code=ErrorCode.MODEL_NOT_FOUND,
        )
    return TransientError(
        f"no healthy runtime endpoint serves model {record.model!r} "
        f"(waited {ctx.settings.runtime_wait_seconds:g} s or until the deadline)",
        code=ErrorCode.RUNTIME_UNAVAILABLE,
    )


# Outcomes after which the fleet keeps nothing about the job.
_FINISHED = frozenset({"succeeded", "failed", "cancelled", "dead_lettered", "expired", "unknown"})
# Skipped deliveries of a job that may still run (or retry) elsewhere: its rank is kept.
_LIVE = frozenset({"skipped:running", "skipped:lost-race"})


def _not_started(ctx: WorkerContext, job_id: str) -> str:
    routing = ctx.store.routing(job_id)
    if routing is None:
        dead_letter_message(ctx, reason="unknown_job", message=f"job {job_id} is not in the store")
        return "unknown"
    if routing["status"] != JobStatus.QUEUED.value:
        return f"skipped:{routing['status']}"  # duplicate or late redelivery: harmless
    if routing["cancel_requested"]:
        _settle(
            ctx, job_id, JobStatus.CANCELLED, by=Settler.ANYONE, reason="cancelled before start"
        )
        return "cancelled"
    deadline = routing["deadline"]
    if deadline is not None and deadline <= utcnow():
        _settle(
            ctx,
            job_id,
            JobStatus.EXPIRED,
            by=Settler.ANYONE,
            reason="deadline passed before start",
            error=ErrorInfo(
                code=ErrorCode.EXPIRED, message="the job's deadline passed before it could start"
            ),
        )
        return "expired"
    return "skipped:lost-race"


def _attempt(
    ctx: WorkerContext,
    record: JobRecord,
    *,
    runtime: Runtime | None = None,
    notes: AttemptNotes | None = None,
    failure: GenqError | None = None,
) -> str:
    """One attempt against ``runtime`` (the worker's one runtime by default). ``failure``:
    there is no runtime to try; the attempt fails with it (retry rules apply)."""
    runtime = runtime or ctx.runtime
    bind_job_context(tenant=record.tenant, lane=record.lane, attempt=record.attempts)
    s = ctx.settings
    writer = ChunkWriter(
        ctx.redis,
        record.id,
        coalesce_ms=s.stream_coalesce_ms,
        maxlen=s.stream_maxlen,
        ttl_seconds=s.stream_ttl_seconds,
        fresh=record.attempts == 1,
    )
    keeper = ctx.leases.hold(record.id)
    try:
        if failure is not None:
            raise failure
        request = parse(JobRequest, record.request)
        if record.kind is JobKind.EMBEDDING:
            return _embed(ctx, record, request, writer, runtime, notes)
        generation = _stream(ctx, record, request, writer, keeper, runtime, notes)
    except LeaseLost:
        log.warning("job %s: lease lost, leaving it to its new owner", record.id)
        return "lease-lost"
    except GenqError as exc:
        if notes is not None:
            notes.error = exc
            notes.done()
        if not keeper.cancelled.is_set():
            return _handle_error(ctx, record, exc, writer)
        generation = Generation(cancelled=True)  # cancelled: the error is moot
    finally:
        ctx.leases.release(keeper)
    if generation.cancelled:
        _settle(
            ctx,
            record.id,
            JobStatus.CANCELLED,
            by=Settler.LEASE_HOLDER,
            reason="cancelled while running",
            result={"text": generation.text, "finish_reason": "cancelled"},
            usage=_usage(generation),
            first_token_at=generation.first_token_at,
            writer=writer,
        )
        return "cancelled"
    _settle(
        ctx,
        record.id,
        JobStatus.SUCCEEDED,
        by=Settler.LEASE_HOLDER,
        reason="completed",
        result={"text": generation.text, "finish_reason": generation.finish_reason},
        usage=_usage(generation),
        first_token_at=generation.first_token_at,
        writer=writer,
    )
    return "succeeded"


def _stream(
    ctx: WorkerContext,
    record: JobRecord,
    request: JobRequest,
    writer: ChunkWriter,
    keeper: Lease,
    runtime: Runtime,
    notes: AttemptNotes | None,
) -> Generation:
    gen = Generation()
    writer.begin_attempt(record.attempts)
    events = cast(Generator[StreamEvent, None, None], runtime.stream(request, record.model))
    try:
        for event in events:
            if event.delta:
                if not gen.parts:
                    gen.first_token_at = utcnow()  # stored with the final transition
                    if notes is not None:
                        notes.first_token = time.monotonic()
                gen.parts.append(event.delta)
                gen.chunks_seen += 1
                writer.append(event.delta)
                if notes is not None:
                    notes.last_token = time.monotonic()
            if event.finish_reason:
                gen.finish_reason = event.finish_reason
                gen.usage = event.usage
            if keeper.cancelled.is_set():
                gen.cancelled = True
                break
            if keeper.lost.is_set():
                raise LeaseLost("lease lost")
    finally:
        events.close()  # closing the response is what makes the runtime stop generating
    if notes is not None:
        notes.usage = _usage(gen)
        notes.done()
    return gen


def _embed(
    ctx: WorkerContext,
    record: JobRecord,
    request: JobRequest,
    writer: ChunkWriter,
    runtime: Runtime,
    notes: AttemptNotes | None = None,
) -> str:
    inputs = [request.input] if isinstance(request.input, str) else list(request.input or [])
    embeddings = runtime.embed(inputs, record.model)
    if notes is not None:
        notes.usage = embeddings.usage.model_dump()
        notes.done()
    _settle(
        ctx,
        record.id,
        JobStatus.SUCCEEDED,
        by=Settler.LEASE_HOLDER,
        reason="completed",
        result={"embeddings": embeddings.vectors, "finish_reason": "stop"},
        usage=embeddings.usage.model_dump(),
        writer=writer,
    )
    return "succeeded"


def _usage(gen: Generation) -> dict[str, int]:
    if gen.usage is not None:
        return gen.usage.model_dump()
    return Usage(completion_tokens=gen.chunks_seen, total_tokens=gen.chunks_seen).model_dump()


def _handle_error(
    ctx: WorkerContext, record: JobRecord, exc: GenqError, writer: ChunkWriter
) -> str:
    s = ctx.settings
    if exc.code is ErrorCode.RUNTIME_UNAVAILABLE:
        ctx.runtime_gate.mark_unreachable()  # the next job waits for it to answer
    info = ErrorInfo(code=exc.code, message=exc.message, retryable=exc.retryable)
    decision = decide(
        exc,
        attempt=record.attempts,
        max_retries=s.max_retries,
        base_seconds=s.backoff_base_seconds,
        cap_seconds=s.backoff_cap_seconds,
    )
    log.info(
        "job %s attempt %d: %s (%s) → %s",
        record.id,
        record.attempts,
        exc.code,
        exc.message,
        decision.outcome,
    )
    if decision.outcome is Outcome.FAIL:
        _settle(
            ctx,
            record.id,
            JobStatus.FAILED,
            by=Settler.LEASE_HOLDER,
            reason=f"permanent error: {exc.code}",
            error=info,
            writer=writer,
        )
        return "failed"
    if decision.outcome is Outcome.DEAD_LETTER:
        exhausted = ErrorInfo(
            code=ErrorCode.RETRIES_EXHAUSTED,
            message=(
                f"gave up after {record.attempts} attempts; last error {exc.code}: {exc.message}"
            ),
            retryable=True,
        )
        dead_letter_job(
            ctx,
            record.id,
            by=Settler.LEASE_HOLDER,
            reason="retries_exhausted",
            error=exhausted,
            writer=writer,
        )
        return "dead_lettered"
    requeued = ctx.store.retry(
        record.id,
        worker=ctx.worker_id,
        error=info,
        delay_seconds=decision.delay_seconds,
        lease_seconds=s.lease_seconds,
    )
    if requeued is not None:
        send_record(ctx.app, s, record, countdown=decision.delay_seconds)
    return "retrying"


def _settle(
    ctx: WorkerContext,
    job_id: str,
    target: JobStatus,
    *,
    by: Settler,
    reason: str,
    result: dict[str, object] | None = None,
    usage: dict[str, int] | None = None,
    error: ErrorInfo | None = None,
    first_token_at: datetime | None = None,
    writer: ChunkWriter | None = None,
) -> None:
    values: dict[str, object] = {}
    if first_token_at is not None:
        values["first_token_at"] = first_token_at
    if result is not None:
        values["result"] = result
    if usage is not None:
        values["usage"] = usage
    if error is not None:
        values["error"] = error.model_dump(mode="json")
    # A running job is settled only by the worker holding it; a queued one by whoever wins.
    # Losing (recovery, cancel, a duplicate delivery) leaves the publishing to the winner.
    ctx.outbox.settle(
        job_id, target, by=by, worker=ctx.worker_id, reason=reason, values=values, writer=writer
    )


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


__all__ = ["LeaseLost", "PermanentError", "run_job"]
