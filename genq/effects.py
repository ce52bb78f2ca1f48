"""What follows a terminal transition, wherever it happened (worker, sweep, gateway cancel):
close the chunk stream, publish the reply, hand webhook deliveries to their queue."""

from __future__ import annotations

import logging

import redis
from celery import Celery

from genq.chunks import ChunkWriter
from genq.replies import flush_replies
from genq.settings import Settings
from genq.store import JobStore
from genq.webhooks_dispatch import dispatch_pending_deliveries
from schemas import JobRecord

log = logging.getLogger(__name__)


def settle_effects(
    app: Celery,
    store: JobStore,
    client: redis.Redis,
    settings: Settings,
    record: JobRecord,
    writer: ChunkWriter | None = None,
) -> None:
    """Run the effects of ``record`` having just reached its terminal state (the CAS winner only).

    Each effect is also in the store's outbox or recoverable by the sweep, so a crash between
    the transition and here delays an effect but never loses it.
    """
    if writer is None:
        writer = ChunkWriter(
            client,
            record.id,
            coalesce_ms=0,
            maxlen=settings.stream_maxlen,
            ttl_seconds=settings.stream_ttl_seconds,
        )
    finish_reason = record.result.finish_reason if record.result else None
    usage = record.usage.model_dump() if record.usage else None
    try:
        writer.finish(record.status.value, finish_reason, usage)
    except Exception:
        log.warning("job %s: could not close its chunk stream", record.id, exc_info=True)
    if record.request.get("reply_to"):
        flush_replies(app, store, claim_seconds=settings.reply_claim_seconds, job_id=record.id)
    if record.webhook_deliveries_queued != 0:
        dispatch_pending_deliveries(app, store, job_id=record.id)
