"""The dead-letter queue: a real broker queue (``genq.dead_letter``) indexed in the store."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from celery import Celery
from kombu import Queue

from genq import constants as c
from genq.store import JobStore
from genq.store.tables import dead_letters
from schemas import ErrorInfo


def dead_letter_queue() -> Queue:
    return Queue(c.DEAD_LETTER_QUEUE, exchange="", routing_key=c.DEAD_LETTER_QUEUE, durable=True)


def publish_dead_letter(
    app: Celery,
    store: JobStore,
    *,
    dead_letter_id: str,
    job_id: str | None,
    reason: str,
    error: ErrorInfo,
    attempts: int,
    raw_body: bytes | None,
    at: datetime,
) -> None:
    """Record the dead letter in the store, then put it on the broker's dead-letter queue."""
    with store.engine.begin() as conn:
        conn.execute(
            dead_letters.insert().values(
                id=dead_letter_id,
                job_id=job_id,
                reason=reason,
                error=error.model_dump(mode="json"),
                attempts=attempts,
                raw_body=raw_body,
                created_at=at,
            )
        )
    message: dict[str, Any] = {
        "dead_letter_id": dead_letter_id,
        "job_id": job_id,
        "reason": reason,
        "error": error.model_dump(mode="json"),
        "attempts": attempts,
        "at": at.isoformat(),
    }
    if job_id is not None:
        message["original"] = {"task_id": job_id, "kwargs": {"job_id": job_id}}
    if raw_body is not None:
        message["raw_body_b64"] = base64.b64encode(raw_body).decode()
    with app.producer_pool.acquire(block=True) as producer:
        producer.publish(
            message,
            exchange="",
            routing_key=c.DEAD_LETTER_QUEUE,
            serializer="json",
            declare=[dead_letter_queue()],
            delivery_mode=2,
            retry=True,
        )
