"""The store's index of the dead-letter queue: one ``dead_letters`` row per dead letter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, select, update

from genq.store.engine import reader
from genq.store.tables import dead_letters
from schemas import ErrorInfo


@dataclass(frozen=True)
class DeadLetter:
    """A dead letter as operators see it."""

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
    """Write the row inside the caller's transaction (a job's commits with its transition)."""
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


def record_dead_letter(engine: Engine, letter: DeadLetterRow, *, attempts: int) -> None:
    """Record a dead letter that moves no job (a message that names none we can run)."""
    with engine.begin() as conn:
        insert_dead_letter(conn, letter, attempts=attempts)


def list_open(engine: Engine, limit: int = 100) -> list[DeadLetter]:
    """Dead letters not yet requeued, oldest first."""
    query = (
        select(dead_letters)
        .where(dead_letters.c.requeued_at.is_(None))
        .order_by(dead_letters.c.created_at)
        .limit(limit)
    )
    with reader(engine).connect() as conn:
        return [_dead_letter(row) for row in conn.execute(query).all()]


def find_open(engine: Engine, ident: str) -> DeadLetter | None:
    """The open dead letter with id ``ident``, or the newest open one of job ``ident``."""
    query = (
        select(dead_letters)
        .where(
            (dead_letters.c.id == ident) | (dead_letters.c.job_id == ident),
            dead_letters.c.requeued_at.is_(None),
        )
        .order_by(dead_letters.c.created_at.desc())
    )
    with reader(engine).connect() as conn:
        row = conn.execute(query).first()
    return _dead_letter(row) if row else None


def mark_requeued(conn: Connection, job_id: str, operator: str, at: datetime) -> None:
    """Close a job's open dead letters (inside its requeue transition)."""
    conn.execute(
        update(dead_letters)
        .where(dead_letters.c.job_id == job_id, dead_letters.c.requeued_at.is_(None))
        .values(requeued_at=at, requeued_by=operator)
    )


def delete_dead_letter(engine: Engine, letter_id: str) -> None:
    """Drop one dead letter's row for good (its job, if any, stays)."""
    with engine.begin() as conn:
        conn.execute(delete(dead_letters).where(dead_letters.c.id == letter_id))


def _dead_letter(row: Any) -> DeadLetter:
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
