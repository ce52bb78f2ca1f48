"""The dead-letter queue: a real broker queue (``genq.dead_letter``) indexed in the store.

Each dead letter is one row in ``dead_letters`` and one message on the broker queue (the
original task reference or raw bytes, plus reason, attempts, last error and time). Operators
list, inspect, requeue and purge them; requeue keeps the job id and resets its attempts.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery import Celery
from kombu import Queue
from sqlalchemy import Connection, delete, select, update

from genq import constants as c
from genq.dispatch import send_record
from genq.redis_keys import stream_key
from genq.settings import Settings
from genq.store import JobStore, utcnow
from genq.store.tables import dead_letters, jobs
from schemas import Conflict, ErrorInfo, JobStatus, NotFound

HEADER = "genq-dead-letter-id"


def dead_letter_queue() -> Queue:
    return Queue(c.DEAD_LETTER_QUEUE, exchange="", routing_key=c.DEAD_LETTER_QUEUE, durable=True)


@dataclass(frozen=True)
class DeadLetter:
    id: str
    job_id: str | None
    reason: str
    error: dict[str, Any] | None
    attempts: int
    created_at: datetime
    raw_body: bytes | None = None

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "job_id": self.job_id,
            "reason": self.reason,
            "error": self.error,
            "attempts": self.attempts,
            "created_at": self.created_at.isoformat(),
        }
        if self.raw_body is not None:
            data["raw_body"] = self.raw_body.decode("utf-8", errors="replace")[:4096]
        return data


@dataclass(frozen=True)
class DeadLetterRow:
    """One dead letter about to be recorded: a job's, or an undecodable message's bytes."""

    id: str
    job_id: str | None
    reason: str
    error: ErrorInfo
    raw_body: bytes | None
    at: datetime


def insert_dead_letter(conn: Connection, letter: DeadLetterRow, *, attempts: int) -> None:
    """Write the store's row (inside the caller's transaction)."""
    conn.execute(
        dead_letters.insert().values(
            id=letter.id,
            job_id=letter.job_id,
            reason=letter.reason,
            error=letter.error.model_dump(mode="json"),
            attempts=attempts,
            raw_body=letter.raw_body,
            created_at=letter.at,
        )
    )


def record_dead_letter(store: JobStore, letter: DeadLetterRow, *, attempts: int) -> None:
    with store.engine.begin() as conn:
        insert_dead_letter(conn, letter, attempts=attempts)


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
            declare=[dead_letter_queue()],
            delivery_mode=2,
            headers={HEADER: letter.id},
            retry=True,
        )


def _row(row: Any) -> DeadLetter:
    m = row._mapping
    return DeadLetter(
        id=m["id"],
        job_id=m["job_id"],
        reason=m["reason"],
        error=m["error"],
        attempts=m["attempts"],
        created_at=m["created_at"],
        raw_body=m["raw_body"],
    )


def list_dead_letters(store: JobStore, limit: int = 100) -> list[DeadLetter]:
    """Dead letters not yet requeued, oldest first."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(dead_letters)
            .where(dead_letters.c.requeued_at.is_(None))
            .order_by(dead_letters.c.created_at)
            .limit(limit)
        ).all()
    return [_row(r) for r in rows]


def find_dead_letter(store: JobStore, ident: str) -> DeadLetter:
    """By dead-letter id or by job id (the newest open one)."""
    with store.engine.connect() as conn:
        row = conn.execute(
            select(dead_letters)
            .where(
                (dead_letters.c.id == ident) | (dead_letters.c.job_id == ident),
                dead_letters.c.requeued_at.is_(None),
            )
            .order_by(dead_letters.c.created_at.desc())
        ).first()
    if row is None:
        raise NotFound(f"no open dead letter {ident} (list them with `genq dlq list`)")
    return _row(row)


def requeue(
    app: Celery, store: JobStore, settings: Settings, ident: str, *, operator: str
) -> dict[str, Any]:
    """Send a dead-lettered job back to its lane with fresh attempts; same job id."""
    letter = find_dead_letter(store, ident)
    if letter.job_id is None:
        raise Conflict(
            f"dead letter {letter.id} is a message that never decoded ({letter.reason}); "
            "there is no job to run. Inspect it with `genq dlq show`, then purge it"
        )
    with app.connection_for_write() as conn:
        # The old attempts' output is obsolete: the rerun starts a fresh chunk stream. Deleted
        # before the job can start again, so the rerun's first entry is seq 1.
        conn.default_channel.client.delete(stream_key(letter.job_id))
    record = store.transition(
        letter.job_id,
        JobStatus.QUEUED,
        worker=operator,
        reason=f"requeued from the dead-letter queue by {operator}",
        only_from=frozenset({JobStatus.DEAD_LETTERED}),
        values={
            "attempts": 0,
            "crashes": 0,
            "worker_id": None,
            "error": None,
            "finished_at": None,
            "lease_expires_at": utcnow() + store.redispatch_after,
            "cancel_requested": False,
        },
    )
    if record is None:
        current = store.get(letter.job_id)
        status = current.status.value if current else "missing"
        raise Conflict(f"job {letter.job_id} is {status}, not dead_lettered; nothing requeued")
    with store.engine.begin() as conn:
        conn.execute(
            update(dead_letters)
            .where(dead_letters.c.job_id == letter.job_id, dead_letters.c.requeued_at.is_(None))
            .values(requeued_at=utcnow(), requeued_by=operator)
        )
    remove_from_broker(app, {letter.id})
    send_record(app, settings, record)
    return {"dead_letter_id": letter.id, "job_id": record.id, "status": record.status.value}


def purge(app: Celery, store: JobStore, ident: str) -> dict[str, Any]:
    """Drop a dead letter for good (its job record stays, still ``dead_lettered``)."""
    try:
        letter = find_dead_letter(store, ident)
    except NotFound:
        with store.engine.connect() as conn:
            status = conn.execute(select(jobs.c.status).where(jobs.c.id == ident)).scalar()
        if status is not None:
            raise Conflict(f"job {ident} is {status}; only dead letters can be purged") from None
        raise
    with store.engine.begin() as conn:
        conn.execute(delete(dead_letters).where(dead_letters.c.id == letter.id))
    remove_from_broker(app, {letter.id})
    return {"dead_letter_id": letter.id, "job_id": letter.job_id, "purged": True}


def broker_depth(app: Celery) -> int:
    with app.connection_for_write() as conn:
        return int(conn.default_channel.client.llen(c.DEAD_LETTER_QUEUE))


def remove_from_broker(app: Celery, ids: set[str]) -> int:
    """Remove the broker copies of these dead letters (kombu's Redis list of JSON envelopes)."""
    removed = 0
    with app.connection_for_write() as conn:
        client = conn.default_channel.client
        for raw in client.lrange(c.DEAD_LETTER_QUEUE, 0, -1):
            try:
                headers = json.loads(raw).get("headers") or {}
            except (ValueError, AttributeError):
                continue
            if headers.get(HEADER) in ids:
                removed += int(client.lrem(c.DEAD_LETTER_QUEUE, 1, raw))
    return removed
