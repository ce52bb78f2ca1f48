"""Batches (``/v1/batches``): their rows, their lines' jobs, and their state changes.

Every line of a batch is an ordinary genq job (same table, states, retries, dead letters),
linked to its batch and ``custom_id`` by a ``batch_lines`` row written in the same transaction
as the job. A batch's own state changes are compare-and-sets like a job's
(``UPDATE … WHERE id=? AND status IN (…)``); a change to a final state writes its webhook event
(``batch.completed``…) in the same transaction, as a job's terminal transition does.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from genq.constants import REDISPATCH_AFTER_SECONDS
from genq.store.engine import reader
from genq.store.files import finish_upload
from genq.store.jobs import NewJob, _row_values
from genq.store.outbox import write_event
from genq.store.records import job_record, job_record_from_values
from genq.store.tables import (
    batch_lines,
    batches,
    job_history,
    jobs,
    utcnow,
)
from schemas import Conflict, JobRecord, JobStatus

__all__ = [
    "BATCH_EVENT_TYPES",
    "BATCH_ID_PREFIX",
    "BatchLine",
    "BatchStore",
    "DuplicateKey",
    "LineCounts",
    "StoredBatch",
]

BATCH_ID_PREFIX = "batch_"
# The batch statuses that still have something to do, and the final ones.
ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")
FINAL = ("completed", "failed", "expired", "cancelled")
BATCH_EVENT_TYPES = {status: f"batch.{status}" for status in FINAL}
OPEN_JOB_STATES = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


@dataclass(frozen=True)
class StoredBatch:
    """A ``batches`` row."""

    id: str
    tenant: str
    status: str
    ends_as: str | None
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None
    priority: int
    errors: list[dict[str, Any]] | None
    output_file_id: str | None
    error_file_id: str | None
    total: int
    completed: int
    failed: int
    created_at: datetime
    expires_at: datetime
    in_progress_at: datetime | None
    finalizing_at: datetime | None
    completed_at: datetime | None
    failed_at: datetime | None
    expired_at: datetime | None
    cancelling_at: datetime | None
    cancelled_at: datetime | None
    updated_at: datetime
    idempotency_key: str | None = None


@dataclass(frozen=True)
class LineCounts:
    """A batch's lines by where their jobs stand."""

    total: int = 0
    completed: int = 0  # succeeded
    failed: int = 0  # terminal without an answer
    open: int = 0  # queued or running


@dataclass(frozen=True)
class BatchLine:
    """One input line, its ``custom_id`` and its job (None once retention purged it)."""

    line: int
    custom_id: str
    job_id: str
    record: JobRecord | None


EventData = Callable[[StoredBatch], dict[str, Any]]


class DuplicateKey(Conflict):
    """A batch with this ``Idempotency-Key`` was created meanwhile (by a concurrent retry)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"a batch with Idempotency-Key {key!r} already exists")
        self.key = key


def new_batch_id() -> str:
    return f"{BATCH_ID_PREFIX}{uuid.uuid4().hex[:24]}"


class BatchStore:
    """Batches in the result store. Thread-safe; one per process is enough."""

    def __init__(
        self, engine: Engine, *, redispatch_after_seconds: float = REDISPATCH_AFTER_SECONDS
    ) -> None:
        self.engine = engine
        self.reads = reader(engine)
        # A line's job not started by then is re-sent by the sweep (as ``JobStore`` does).
        self.redispatch_after = timedelta(seconds=redispatch_after_seconds)

    # -- writing -------------------------------------------------------------------------
    def create(self, values: dict[str, Any], *, event: EventData | None = None) -> StoredBatch:
        """Insert a batch (``values`` hold its columns, ``id`` and ``status`` included); a batch
        born final (``failed`` validation) writes its event with it when ``event`` is given."""
        now = utcnow()
        row = {"total": 0, "completed": 0, "failed": 0, "created_at": now, "updated_at": now}
        row.update(values)
        try:
            with self.engine.begin() as conn:
                insert = batches.insert().values(**row).returning(*batches.c)
                stored = _batch(conn.execute(insert).one())
                if event is not None and stored.status in BATCH_EVENT_TYPES:
                    write_batch_event(conn, stored, event(stored), now)
        except IntegrityError:
            key = row.get("idempotency_key")
            if not isinstance(key, str):
                raise
            raise DuplicateKey(key) from None
        return stored

    def by_idempotency_key(self, tenant: str, key: str) -> StoredBatch | None:
        """The tenant's batch created with ``Idempotency-Key: key``, if any."""
        c = batches.c
        query = select(batches).where(c.tenant == tenant, c.idempotency_key == key)
        with self.reads.connect() as conn:
            row = conn.execute(query).first()
        return _batch(row) if row else None

    def add_lines(
        self, batch_id: str, lines: Sequence[tuple[int, str, NewJob]]
    ) -> list[JobRecord] | None:
        """Store the jobs of ``lines`` (number, custom_id, job) as queued, each linked to the
        batch, in one transaction that first compare-and-sets the batch still ``validating``
        (and counts them in its ``total``); their records, to publish, or None if the batch
        moved on (was cancelled) and nothing was stored. A line stored already (a driver that
        overlapped another) fails the whole transaction: no line gets a second job."""
        now = utcnow()
        rows = [_row_values(job, now, now + self.redispatch_after) for _line, _cid, job in lines]
        try:
            with self.engine.begin() as conn:
                # First, so that a concurrent cancel waits for this transaction (its row lock).
                counted = conn.execute(
                    update(batches)
                    .where(batches.c.id == batch_id, batches.c.status == "validating")
                    .values(total=batches.c.total + len(lines), updated_at=now)
                )
                if counted.rowcount != 1:
                    return None
                conn.execute(
                    batch_lines.insert(),
                    [
                        {"batch_id": batch_id, "line": line, "custom_id": cid, "job_id": job.id}
                        for line, cid, job in lines
                    ],
                )
                conn.execute(jobs.insert(), rows)
                conn.execute(
                    job_history.insert(),
                    [
                        {"job_id": job.id, "from_status": None, "to_status": "queued", "at": now,
                         "worker": None, "reason": f"submitted by {batch_id}"}
                        for _line, _cid, job in lines
                    ],
                )  # fmt: skip
        except IntegrityError as exc:
            raise Conflict(f"a line of batch {batch_id} was stored by another driver") from exc
        return [job_record_from_values(row) for row in rows]

    def last_line(self, batch_id: str) -> int:
        """The number of the batch's last stored line (0: none yet): where queuing resumes."""
        query = select(func.max(batch_lines.c.line)).where(batch_lines.c.batch_id == batch_id)
        with self.reads.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def move(
        self,
        batch_id: str,
        sources: Sequence[str],
        target: str,
        *,
        values: dict[str, Any] | None = None,
        event: EventData | None = None,
        files_done: Mapping[str, int] | None = None,
    ) -> tuple[StoredBatch, str | None] | None:
        """Compare-and-set the batch from one of ``sources`` to ``target``, stamping
        ``<target>_at``; a final ``target`` writes its webhook event in the same transaction
        (``event`` renders its data), and makes the uploads ``files_done`` (id: size) visible
        with it, so a batch's output files exist exactly when it is final. The new row and
        the event id, or None if it lost."""
        now = utcnow()
        stamp = {f"{target}_at": now} if f"{target}_at" in batches.c else {}
        query = (
            update(batches)
            .where(batches.c.id == batch_id, batches.c.status.in_(list(sources)))
            .values(status=target, updated_at=now, **stamp, **(values or {}))
            .returning(*batches.c)
        )
        with self.engine.begin() as conn:
            row = conn.execute(query).first()
            if row is None:
                return None
            stored = _batch(row)
            for file_id, size in (files_done or {}).items():
                conn.execute(finish_upload(file_id, size))
            event_id = None
            if event is not None and target in BATCH_EVENT_TYPES:
                event_id = write_batch_event(conn, stored, event(stored), now)
        return stored, event_id

    def flag_cancel(self, batch_id: str) -> list[str]:
        """Mark every open job of the batch cancel-requested (a queued one will never start);
        the ids of those running, whose workers must be told."""
        ids = select(batch_lines.c.job_id).where(batch_lines.c.batch_id == batch_id)
        query = (
            update(jobs)
            .where(jobs.c.id.in_(ids.scalar_subquery()), jobs.c.status.in_(OPEN_JOB_STATES))
            .values(cancel_requested=True)
        )
        with self.engine.begin() as conn:
            conn.execute(query)
        return self.open_jobs(batch_id, JobStatus.RUNNING, limit=10_000)

    # -- reading -------------------------------------------------------------------------
    def get(self, batch_id: str, tenant: str | None) -> StoredBatch | None:
        query = select(batches).where(batches.c.id == batch_id)
        if tenant is not None:
            query = query.where(batches.c.tenant == tenant)
        with self.reads.connect() as conn:
            row = conn.execute(query).first()
        return _batch(row) if row else None

    def page(self, tenant: str | None, *, after: str | None, limit: int) -> list[StoredBatch]:
        """Newest first, from after the batch ``after`` if given."""
        c = batches.c
        query = select(batches).order_by(c.created_at.desc(), c.id.desc()).limit(limit)
        if tenant is not None:
            query = query.where(c.tenant == tenant)
        with self.reads.connect() as conn:
            if after is not None:
                mark = conn.execute(select(c.created_at, c.id).where(c.id == after)).first()
                if mark is not None:
                    query = query.where(
                        or_(c.created_at < mark[0], and_(c.created_at == mark[0], c.id < mark[1]))
                    )
            return [_batch(row) for row in conn.execute(query).all()]

    def active(self, limit: int = 100) -> list[StoredBatch]:
        """Batches that still have something to do, oldest first."""
        query = (
            select(batches)
            .where(batches.c.status.in_(ACTIVE))
            .order_by(batches.c.created_at)
            .limit(limit)
        )
        with self.reads.connect() as conn:
            return [_batch(row) for row in conn.execute(query).all()]

    def counts(self, batch_id: str) -> LineCounts:
        """The batch's lines by their jobs' states (a purged job counts as failed)."""
        query = (
            select(jobs.c.status, func.count())
            .select_from(batch_lines.outerjoin(jobs, jobs.c.id == batch_lines.c.job_id))
            .where(batch_lines.c.batch_id == batch_id)
            .group_by(jobs.c.status)
        )
        with self.reads.connect() as conn:
            by_status = {status: int(n) for status, n in conn.execute(query).all()}
        open_ = sum(by_status.get(s, 0) for s in OPEN_JOB_STATES)
        done = by_status.get(JobStatus.SUCCEEDED.value, 0)
        total = sum(by_status.values())
        return LineCounts(total=total, completed=done, failed=total - done - open_, open=open_)

    def open_jobs(self, batch_id: str, status: JobStatus, *, limit: int) -> list[str]:
        """Ids of the batch's jobs in ``status``."""
        query = (
            select(jobs.c.id)
            .join(batch_lines, batch_lines.c.job_id == jobs.c.id)
            .where(batch_lines.c.batch_id == batch_id, jobs.c.status == status.value)
            .limit(limit)
        )
        with self.reads.connect() as conn:
            return list(conn.execute(query).scalars())

    def lines(self, batch_id: str, *, after_line: int = 0, limit: int = 500) -> list[BatchLine]:
        """The batch's lines in order, ``limit`` at a time, with their jobs' records."""
        query = (
            select(batch_lines.c.line, batch_lines.c.custom_id, batch_lines.c.job_id, jobs)
            .select_from(batch_lines.outerjoin(jobs, jobs.c.id == batch_lines.c.job_id))
            .where(batch_lines.c.batch_id == batch_id, batch_lines.c.line > after_line)
            .order_by(batch_lines.c.line)
            .limit(limit)
        )
        with self.reads.connect() as conn:
            rows = conn.execute(query).all()
        out = []
        for row in rows:
            m = row._mapping
            record = job_record(row) if m["id"] is not None else None
            out.append(BatchLine(m["line"], m["custom_id"], m["job_id"], record))
        return out


def write_batch_event(
    conn: Connection, batch: StoredBatch, data: dict[str, Any], now: datetime
) -> str | None:
    """The batch's final event and one pending delivery per endpoint of its tenant that takes
    it (batches carry no webhook URL of their own); its id, or None without a target."""
    written = write_event(
        conn,
        subject_id=batch.id,
        tenant=batch.tenant,
        event_type=BATCH_EVENT_TYPES[batch.status],
        data=data,
        now=now,
    )
    return written[0] if written else None


def _batch(row: Any) -> StoredBatch:
    return StoredBatch(**row._mapping)
