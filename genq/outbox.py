"""The outbox: what follows a terminal transition, published once the transition committed.

A terminal transition writes the job's reply and its webhook event to the outbox in its own
transaction (``genq.store.outbox``). Whoever made it (the worker holding the job's lease, a
worker or the sweep settling a queued job, a cancel in the gateway) then publishes them: it
closes the job's chunk stream, sends the reply to the queue the producer named and hands each
webhook delivery to ``genq.webhooks``. Every publish is claimed with a compare-and-set first,
and the sweep publishes what a dead publisher left (a reply claim older than
``reply_claim_seconds``, a delivery whose dispatch lease lapsed), so a crash between the
transition and its publishing delays a reply or an event, never loses it. Nor doubles it:
publishing a reply that already went out is a no-op (``genq.reply_publisher``), so when the
sweep takes over from a publisher killed after sending and before recording, nothing more goes
out; a duplicate delivery message is harmless (the delivery task claims before it sends).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

import redis
from celery import Celery
from kombu import Queue

from genq import constants as c
from genq.chunks import ChunkWriter
from genq.dispatch import withdraw
from genq.reply_publisher import RedisReplyPublisher, ReplyPublisher
from genq.settings import Settings
from genq.store import JobStore, Transition, utcnow
from genq.store.outbox import claim_due_deliveries, claim_replies, mark_reply_published
from schemas import BrokerUnavailable, JobRecord, JobStatus

log = logging.getLogger(__name__)

QUEUED_ONLY = frozenset({JobStatus.QUEUED})  # settling a job that never started


class Settler(Enum):
    """Who settles a job, which decides whether its compare-and-set names a worker."""

    # The worker running the job under its lease: it settles the job only while the job is
    # still its own, so a worker whose lease the sweep gave away neither settles nor publishes.
    LEASE_HOLDER = "lease_holder"
    # Nobody holds the job (it is queued, or the sweep re-checks a lapsed lease itself):
    # whoever wins the compare-and-set settles it.
    ANYONE = "anyone"

    def only_worker(self, worker: str | None) -> str | None:
        """The worker the job must still belong to for the transition to apply (None: any)."""
        if self is Settler.ANYONE:
            return None
        if worker is None:
            raise ValueError("a lease holder is a worker: pass its id")
        return worker


@dataclass(frozen=True)
class Outbox:
    """Settles jobs into terminal states and publishes what each transition wrote."""

    app: Celery
    store: JobStore
    redis: redis.Redis
    settings: Settings

    def settle(
        self,
        job_id: str,
        target: JobStatus,
        *,
        by: Settler,
        worker: str | None,
        reason: str,
        values: dict[str, Any] | None = None,
        only_from: frozenset[JobStatus] | None = None,
        writer: ChunkWriter | None = None,
    ) -> JobRecord | None:
        """Move ``job_id`` to the terminal ``target`` and publish its reply and event; the new
        record, or None when another settler won (theirs to publish, not ours)."""
        if not target.terminal:
            raise ValueError(f"{target.value} is not a terminal state")
        moved = self.store.transition(
            job_id,
            target,
            worker=worker,
            reason=reason,
            values=values,
            only_from=only_from,
            only_worker=by.only_worker(worker),
        )
        if moved is None:
            return None
        if only_from == QUEUED_ONLY:  # it never left the fleet's backlog: out of it now
            withdraw(self.app, self.settings, moved.record)
        self.publish(moved, writer)
        return moved.record

    def publish(self, moved: Transition, writer: ChunkWriter | None = None) -> None:
        """Publish what a terminal transition wrote (call only as its winner).

        ``writer`` is the job's open chunk stream, if this process has one with chunks still
        buffered.
        """
        record, deliveries = moved.record, moved.deliveries
        self._close_stream(record, writer)
        if deliveries.reply:
            publish_replies(
                self.replies,
                self.store,
                claim_seconds=self.settings.reply_claim_seconds,
                job_id=record.id,
            )
        if deliveries.webhooks:
            dispatch_webhooks(self.app, self.store, job_id=record.id)

    @property
    def replies(self) -> ReplyPublisher:
        """How replies go out on this broker, each once (Redis; RabbitMQ would bring its own)."""
        return RedisReplyPublisher(self.redis)

    def _close_stream(self, record: JobRecord, writer: ChunkWriter | None) -> None:
        if writer is None:
            s = self.settings
            writer = ChunkWriter(
                self.redis,
                record.id,
                coalesce_ms=0,
                maxlen=s.stream_maxlen,
                ttl_seconds=s.stream_ttl_seconds,
            )
        finish_reason = record.result.finish_reason if record.result else None
        usage = record.usage.model_dump() if record.usage else None
        try:
            writer.finish(record.status.value, finish_reason, usage)
        except Exception:  # readers also stop on the job's terminal status in the store
            log.warning("job %s: could not close its chunk stream", record.id, exc_info=True)


def reply_queue(name: str) -> Queue:
    """The durable queue a producer named in ``reply_to`` (the reply's routing key)."""
    return Queue(name, exchange="", routing_key=name, durable=True)


def publish_replies(
    publisher: ReplyPublisher,
    store: JobStore,
    *,
    claim_seconds: float,
    job_id: str | None = None,
    now: datetime | None = None,
    limit: int = 100,
) -> int:
    """Publish unpublished replies (all, or one job's); returns how many went out.

    A reply claimed more than ``claim_seconds`` ago belongs to a publisher that died or stalled
    before recording it published, and is taken over: ``publisher`` sends nothing for a reply
    that already went out, and it is recorded."""
    now = now or utcnow()
    sent = 0
    for reply in claim_replies(
        store.engine, now, claim_seconds=claim_seconds, job_id=job_id, limit=limit
    ):
        try:
            pushed = publisher.publish(reply)
        except BrokerUnavailable:  # the claim lapses and the sweep retries
            log.warning(
                "reply for job %s not published; the sweep retries", reply.job_id, exc_info=True
            )
            continue
        mark_reply_published(store.engine, reply.id, utcnow())
        if pushed:
            sent += 1
        else:
            log.info(
                "reply for job %s had gone out before its publisher recorded it; recorded now",
                reply.job_id,
            )
    return sent


def dispatch_webhooks(
    app: Celery,
    store: JobStore,
    *,
    job_id: str | None = None,
    event_id: str | None = None,
    now: datetime | None = None,
) -> int:
    """Send a delivery task to ``genq.webhooks`` for each due, unclaimed pending delivery (all,
    one job's or one event's); returns how many were sent.

    Retries wait in the store (``next_attempt_at``), never as a Celery ETA. A delivery whose
    message was lost is claimed again once ``WEBHOOK_DISPATCH_LEASE_SECONDS`` have passed;
    a duplicate message is harmless, as the delivery task claims before it sends.
    """
    now = now or utcnow()
    ids = claim_due_deliveries(
        store.engine,
        now,
        lease_seconds=c.WEBHOOK_DISPATCH_LEASE_SECONDS,
        job_id=job_id,
        event_id=event_id,
        limit=c.WEBHOOK_DISPATCH_BATCH,
    )
    sent = 0
    for delivery_id in ids:
        try:
            app.send_task(
                c.TASK_DELIVER_WEBHOOK,
                kwargs={"delivery_id": delivery_id},
                queue=c.WEBHOOK_QUEUE,
                routing_key=c.WEBHOOK_QUEUE,
            )
        except Exception:  # kombu/redis raise many types; the claim lapses and the sweep re-sends
            log.warning("could not hand webhook delivery %s to the broker", delivery_id)
            continue
        sent += 1
    return sent
