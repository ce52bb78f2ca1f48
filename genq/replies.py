"""Reply queues: terminal job records published to the queue a producer named (kombu, durable)."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from kombu import Queue

from genq.store import JobStore

log = logging.getLogger(__name__)


def reply_queue(name: str) -> Queue:
    return Queue(name, exchange="", routing_key=name, durable=True)


def publish_reply(app: Celery, queue: str, payload: dict[str, Any]) -> None:
    """Publish one record to ``queue`` through the app's producer pool (JSON)."""
    with app.producer_pool.acquire(block=True) as producer:
        producer.publish(
            payload,
            exchange="",
            routing_key=queue,
            serializer="json",
            declare=[reply_queue(queue)],
            delivery_mode=2,
            retry=True,
            retry_policy={"max_retries": 3, "interval_start": 0.1, "interval_step": 0.5},
            headers={"genq-job-id": payload.get("id", "")},
        )


def flush_replies(
    app: Celery,
    store: JobStore,
    *,
    claim_seconds: float,
    limit: int = 100,
    job_id: str | None = None,
) -> int:
    """Publish pending outbox replies (all, or one job's); returns how many went out.

    A claim older than ``claim_seconds`` belongs to a publisher that died between claiming
    and publishing, and is taken over."""
    sent = 0
    for row in store.pending_replies(limit=limit, job_id=job_id):
        if not store.claim_reply(row["id"], claim_seconds):
            continue  # someone else is publishing it
        try:
            publish_reply(app, row["queue"], row["payload"])
        except Exception:
            log.warning(
                "reply publish failed for job %s; the sweep retries", row["job_id"], exc_info=True
            )
            continue
        store.mark_reply_published(row["id"])
        sent += 1
    return sent
