"""The dead-letter queue: a real broker queue (``genq.dead_letter``) indexed in the store.

Each dead letter is one row in ``dead_letters`` and one message on the broker queue (the
original task reference or raw bytes, plus reason, attempts, last error and time). Operators
list, inspect, requeue and purge them; requeue keeps the job id and resets its attempts.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import redis
from celery import Celery
from kombu import Queue

from genq import constants as c
from genq import rabbitmq
from genq.dispatch import send_record
from genq.redis_keys import stream_key
from genq.settings import Settings
from genq.store import JobStore
from genq.store import dead_letters as store_dead_letters
from genq.store.dead_letters import DeadLetter, DeadLetterRow
from schemas import Conflict, NotFound

__all__ = [
    "DeadLetter",
    "DeadLetterRow",
    "dead_letter_queue",
    "find_dead_letter",
    "list_dead_letters",
    "publish_dead_letter",
    "purge",
    "record_dead_letter",
    "remove_from_broker",
    "requeue",
]

HEADER = "genq-dead-letter-id"


def dead_letter_queue(app: Celery | None = None) -> Queue:
    """``genq.dead_letter``; on RabbitMQ bound to the dead-letter exchange the task queues
    name (``genq.rabbitmq``), so what the broker dead-letters lands there too."""
    if app is not None and _on_rabbitmq(app):
        return rabbitmq.dead_letter_queue()
    return Queue(c.DEAD_LETTER_QUEUE, exchange="", routing_key=c.DEAD_LETTER_QUEUE, durable=True)


def _on_rabbitmq(app: Celery) -> bool:
    settings: Settings | None = getattr(app, "genq_settings", None)
    return settings is not None and settings.broker_is_amqp


def record_dead_letter(store: JobStore, letter: DeadLetterRow, *, attempts: int) -> None:
    """Record a dead letter that moves no job (a message that names none we can run)."""
    store_dead_letters.record_dead_letter(store.engine, letter, attempts=attempts)


def publish_dead_letter(app: Celery, letter: DeadLetterRow, *, attempts: int) -> None:
    """Put the dead letter on the broker's ``genq.dead_letter`` queue (the store has the row)."""
    message: dict[str, Any] = {
        "dead_letter_id": letter.id,
        "job_id": letter.job_id,
        "reason": letter.reason,
        "error": letter.error.model_dump(mode="json"),
        "attempts": attempts,
        "at": letter.at.isoformat(),
    }
    if letter.job_id is not None:
        message["original"] = {"task_id": letter.job_id, "kwargs": {"job_id": letter.job_id}}
    if letter.raw_body is not None:
        message["raw_body_b64"] = base64.b64encode(letter.raw_body).decode()
    with app.producer_pool.acquire(block=True) as producer:
        producer.publish(
            message,
            exchange="",
            routing_key=c.DEAD_LETTER_QUEUE,
            serializer="json",
            declare=[dead_letter_queue(app)],
            delivery_mode=2,
            headers={HEADER: letter.id},
            retry=True,
        )


def list_dead_letters(store: JobStore, limit: int = 100) -> list[DeadLetter]:
    """Dead letters not yet requeued, oldest first."""
    return store_dead_letters.list_open(store.engine, limit)


def find_dead_letter(store: JobStore, ident: str) -> DeadLetter:
    """By dead-letter id or by job id (the newest open one)."""
    letter = store_dead_letters.find_open(store.engine, ident)
    if letter is None:
        raise NotFound(f"no open dead letter {ident} (list them with `genq dlq list`)")
    return letter


def requeue(
    app: Celery, store: JobStore, settings: Settings, ident: str, *, operator: str
) -> dict[str, Any]:
    """Send a dead-lettered job back to its lane with fresh attempts; same job id."""
    letter = find_dead_letter(store, ident)
    if letter.job_id is None:
        raise Conflict(
            f"dead letter {letter.id} is a message that names no job to run ({letter.reason}); "
            "inspect it with `genq dlq show`, then purge it"
        )
    # The old attempts' output is obsolete: the rerun starts a fresh chunk stream. Deleted
    # before the job can start again, so the rerun's first entry is seq 1.
    with redis.Redis.from_url(
        settings.redis_url, socket_timeout=c.REDIS_SOCKET_TIMEOUT_SECONDS
    ) as client:
        client.delete(stream_key(letter.job_id))
    record = store.requeue_dead_lettered(letter.job_id, operator=operator)
    if record is None:
        current = store.get(letter.job_id)
        status = current.status.value if current else "missing"
        raise Conflict(f"job {letter.job_id} is {status}, not dead_lettered; nothing requeued")
    remove_from_broker(app, {letter.id})
    send_record(app, settings, record)
    return {"dead_letter_id": letter.id, "job_id": record.id, "status": record.status.value}


def purge(app: Celery, store: JobStore, ident: str) -> dict[str, Any]:
    """Drop a dead letter for good (its job record stays, still ``dead_lettered``)."""
    try:
        letter = find_dead_letter(store, ident)
    except NotFound:
        job = store.get(ident)
        if job is not None:
            status = job.status.value
            raise Conflict(f"job {ident} is {status}; only dead letters can be purged") from None
        raise
    store_dead_letters.delete_dead_letter(store.engine, letter.id)
    remove_from_broker(app, {letter.id})
    return {"dead_letter_id": letter.id, "job_id": letter.job_id, "purged": True}


def remove_from_broker(app: Celery, ids: set[str]) -> int:
    """Remove the broker copies of these dead letters (kombu's Redis list of JSON envelopes,
    or RabbitMQ's queue)."""
    removed = 0
    with app.connection_for_write() as conn:
        if _on_rabbitmq(app):
            return rabbitmq.remove_dead_letters(conn, HEADER, ids)
        client = conn.default_channel.client
        for raw in client.lrange(c.DEAD_LETTER_QUEUE, 0, -1):
            try:
                headers = json.loads(raw).get("headers") or {}
            except (ValueError, AttributeError):
                continue
            if headers.get(HEADER) in ids:
                removed += int(client.lrem(c.DEAD_LETTER_QUEUE, 1, raw))
    return removed
