"""The periodic sweep: recover lapsed leases, re-send lost retries, expire overdue jobs.

Beat runs it in its own process, one sweep at a time across processes (``workers.beat``); every
action is a compare-and-set anyway, so two sweeps running at once would be harmless.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from genq import rabbitmq
from genq.constants import QUARANTINE_KEY
from genq.dead_letters import HEADER as DEAD_LETTER_HEADER
from genq.dead_letters import list_dead_letters, remove_from_broker
from genq.dispatch import send_job, send_record
from genq.fleet.config import fleet_dispatch, load_fleet
from genq.fleet.slots import SlotTable
from genq.outbox import QUEUED_ONLY, Settler, dispatch_webhooks, publish_replies
from genq.store import utcnow
from genq.store.retention import purge_batches_and_files, purge_expired
from schemas import ErrorCode, ErrorInfo, JobStatus
from tasks.dead_letter import dead_letter_job, dead_letter_message
from workers.context import WorkerContext

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    recovered: int = 0
    crash_dead_lettered: int = 0
    redispatched: int = 0
    expired: int = 0
    replies: int = 0
    webhooks: int = 0
    quarantined: int = 0
    purged: int = 0
    purged_batches: int = 0
    purged_files: int = 0


def run_sweep(ctx: WorkerContext, now: datetime | None = None) -> SweepReport:
    now = now or utcnow()
    report = SweepReport()
    _recover_lapsed(ctx, now, report)
    _redispatch_stale(ctx, now, report)
    _expire_overdue(ctx, now, report)
    report.quarantined = _dead_letter_quarantine(ctx)
    if ctx.settings.broker_is_amqp:
        report.quarantined += _adopt_broker_dead_letters(ctx)
    report.purged, letters = purge_expired(
        ctx.store.engine,
        now=now,
        finished_after_seconds=ctx.settings.retention_finished_seconds,
        dead_letter_after_seconds=ctx.settings.retention_dead_letter_seconds,
    )
    if letters:
        remove_from_broker(ctx.app, set(letters))
    report.purged_batches, report.purged_files = purge_batches_and_files(
        ctx.store.engine, now=now, finished_after_seconds=ctx.settings.retention_finished_seconds
    )
    # What a dead publisher left in the outbox, and webhook retries that fell due.
    report.replies = publish_replies(
        ctx.outbox.replies, ctx.store, claim_seconds=ctx.settings.reply_claim_seconds, now=now
    )
    report.webhooks = dispatch_webhooks(ctx.app, ctx.store, now=now)
    if report.recovered or report.crash_dead_lettered or report.redispatched or report.expired:
        log.info("sweep: %s", report)
    return report


def _recover_lapsed(ctx: WorkerContext, now: datetime, report: SweepReport) -> None:
    s = ctx.settings
    for lease in ctx.store.lapsed_leases(now):
        # Each move re-checks that the lease is still lapsed and still that worker's, so a
        # renewal or another sweep in between wins and this one does nothing.
        crashes = lease.crashes + 1
        if crashes >= s.crash_limit:
            message = (
                f"the job's worker stopped {crashes} times while running it "
                f"(last {lease.worker_id}); dead-lettered so it cannot crash-loop the fleet"
            )
            if dead_letter_job(
                ctx,
                lease.job_id,
                by=Settler.ANYONE,  # the lease lapsed: the CAS re-checks that, not a worker
                reason="worker_crashed",
                error=ErrorInfo(code=ErrorCode.WORKER_CRASHED, message=message),
                lapsed=lease,
            ):
                report.crash_dead_lettered += 1
            continue
        record = ctx.store.recover_lapsed(
            lease, worker=ctx.worker_id, dispatch_by=now + timedelta(seconds=s.lease_seconds)
        )
        if record is not None:
            send_record(ctx.app, s, record)
            report.recovered += 1


def _redispatch_stale(ctx: WorkerContext, now: datetime, report: SweepReport) -> None:
    """Re-send queued jobs whose message should have been picked up by now (lost with a
    producer or a broker restart). A job that is merely waiting in a long backlog is re-sent
    less and less often: the next dispatch-by time grows with the job's age."""
    s = ctx.settings
    stale = ctx.store.stale_dispatches(now)
    reserved = _reservations(ctx) if stale and fleet_dispatch(s) else {}
    for job in stale:
        age = (now - job.created_at).total_seconds()
        until = now + timedelta(seconds=max(s.lease_seconds, age))
        if ctx.store.claim_redispatch(job, until):
            # A job the dispatcher released whose message was lost still holds the slot
            # reserved for it: give that back, or the re-sent job waits for it to lapse.
            _free_untaken(ctx, reserved.get(job.job_id, []))
            send_job(
                ctx.app,
                s,
                job_id=job.job_id,
                kind=job.kind,
                tenant=job.tenant,
                lane=job.lane,
                priority=job.priority,
            )
            report.redispatched += 1


def _reservations(ctx: WorkerContext) -> dict[str, list[str]]:
    """The slot tokens the fleet holds for each job."""
    return _slot_table(ctx).reservations()


def _free_untaken(ctx: WorkerContext, tokens: list[str]) -> None:
    table = _slot_table(ctx)
    for endpoint in load_fleet(ctx.settings).endpoints:
        for token in tokens:
            if table.free_untaken(endpoint.name, token):
                log.warning(
                    "gave back slot %s on %s: its message was never taken", token, endpoint.name
                )


def _slot_table(ctx: WorkerContext) -> SlotTable:
    return SlotTable(ctx.redis, ctx.settings.fleet_slot_lease_seconds)


def _dead_letter_quarantine(ctx: WorkerContext, limit: int = 100) -> int:
    """Undecodable broker items the transport set aside become dead letters (bytes intact)."""
    moved = 0
    for _ in range(limit):
        raw = ctx.redis.rpop(QUARANTINE_KEY)
        if not isinstance(raw, bytes):
            break
        try:
            dead_letter_message(
                ctx,
                reason="undecodable",
                message="a broker item that is not a message envelope (not JSON)",
                raw_body=raw,
            )
        except Exception:
            ctx.redis.rpush(QUARANTINE_KEY, raw)  # keep it for the next sweep
            raise
        moved += 1
    return moved


def _adopt_broker_dead_letters(ctx: WorkerContext) -> int:
    """RabbitMQ: what its dead-letter exchange put on ``genq.dead_letter`` (a message rejected,
    over a quorum queue's delivery limit, expired by a policy) becomes a dead letter genq lists,
    bytes intact. Its job, if it names one, is still queued or running in the store, and genq's
    own recovery (lease sweep, re-send) runs it; the letter is for the record."""

    def known(ready: int) -> int:
        return len(list_dead_letters(ctx.store, limit=ready))

    def adopt(body: bytes, death: dict[str, Any]) -> None:
        reason = str(death.get("reason") or "unknown")
        dead_letter_message(
            ctx,
            reason=f"broker_{reason}",
            message=(
                f"RabbitMQ dead-lettered this message from {death.get('queue', '?')} ({reason}, "
                f"{death.get('count', 1)} time(s))"
            ),
            raw_body=body,
        )

    with ctx.app.connection_for_write() as connection:
        return rabbitmq.adopt_dead_letters(connection, DEAD_LETTER_HEADER, known, adopt)


def _expire_overdue(ctx: WorkerContext, now: datetime, report: SweepReport) -> None:
    error = ErrorInfo(
        code=ErrorCode.EXPIRED, message="the job's deadline passed before it could start"
    )
    for job_id in ctx.store.overdue_queued(now):
        record = ctx.outbox.settle(
            job_id,
            JobStatus.EXPIRED,
            by=Settler.ANYONE,
            worker=ctx.worker_id,
            reason="deadline passed while queued",
            only_from=QUEUED_ONLY,
            values={"error": error.model_dump(mode="json")},
        )
        if record is not None:
            report.expired += 1
