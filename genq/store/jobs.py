"""The job store: accepting jobs and reading them. Its state changes are in
``genq.store.transitions`` and ``genq.store.recovery``; every one is a compare-and-set with its
history row."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Select, and_, bindparam, delete, func, or_, select, text
from sqlalchemy.exc import IntegrityError

from genq.constants import REDISPATCH_AFTER_SECONDS
from genq.store.cas import insert_history
from genq.store.engine import reader
from genq.store.errors import StoreUnavailable as StoreUnavailable  # re-exported: older imports
from genq.store.records import history_entry, job_record, job_record_from_values
from genq.store.recovery import JobRecovery
from genq.store.tables import job_history, jobs, utcnow
from schemas import (
    TERMINAL_STATES,
    Conflict,
    InvalidRequest,
    JobRecord,
    JobRequest,
    JobStatus,
)

# The hot reads, built once: a long poll reads a job's status while it waits and its record
# once at the end; GET /v1/jobs/{id} reads the record.
_RECORD = select(jobs).where(jobs.c.id == bindparam("job_id"))
_RECORD_IN_TENANT = _RECORD.where(jobs.c.tenant == bindparam("tenant"))
_STATUS = select(jobs.c.status).where(jobs.c.id == bindparam("job_id"))
_STATUS_IN_TENANT = _STATUS.where(jobs.c.tenant == bindparam("tenant"))


@dataclass(frozen=True)
class NewJob:
    """What a producer hands the store to accept a job."""

    id: str
    tenant: str
    lane: str
    model: str
    request: JobRequest

    def request_hash(self) -> str:
        body = self.request.model_dump(mode="json", exclude={"idempotency_key"})
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Page:
    records: list[JobRecord]
    next_cursor: str | None


def encode_cursor(created_at: datetime, job_id: str) -> str:
    raw = f"{created_at.isoformat()}|{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, job_id = raw.split("|", 1)
        return datetime.fromisoformat(stamp), job_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("cursor is not one this API returned; start without it") from exc


class JobStore(JobRecovery):
    """SQL-backed source of truth for jobs. Thread-safe; one per process.

    Writes go through ``engine``; reads through ``reads``, a view of it that never takes the
    SQLite writer lock (in WAL mode a read never waits for a writer).
    """

    def __init__(
        self, engine: Engine, *, redispatch_after_seconds: float = REDISPATCH_AFTER_SECONDS
    ) -> None:
        self.engine = engine
        self.reads = reader(engine)
        # A new or requeued job's dispatch-by time: the sweep re-sends it if not started by then.
        self.redispatch_after = timedelta(seconds=redispatch_after_seconds)

    # -- producer side -------------------------------------------------------------------
    def create(self, job: NewJob) -> tuple[JobRecord, bool]:
        """Insert a queued job; with an idempotency key, return the existing one instead.

        Returns ``(record, created)``. Raises ``Conflict`` if the key was used with another body.
        """
        now = utcnow()
        values = _row_values(job, now, now + self.redispatch_after)
        req = job.request
        try:
            with self.engine.begin() as conn:
                row = conn.execute(jobs.insert().values(**values).returning(*jobs.c)).one()
                insert_history(
                    conn, job.id, None, JobStatus.QUEUED, at=now, worker=None, reason="submitted"
                )
        except IntegrityError:
            if req.idempotency_key is None:
                raise
            return self._replay(job), False
        return job_record(row), True

    def create_many(self, batch: list[NewJob]) -> list[JobRecord]:
        """Insert many queued jobs in one transaction (no idempotency keys: use ``create``)."""
        if any(job.request.idempotency_key for job in batch):
            raise InvalidRequest("a batch cannot carry idempotency keys; submit those one by one")
        now = utcnow()
        rows = [_row_values(job, now, now + self.redispatch_after) for job in batch]
        with self.engine.begin() as conn:
            conn.execute(jobs.insert(), rows)
            conn.execute(
                job_history.insert(),
                [
                    {
                        "job_id": job.id,
                        "from_status": None,
                        "to_status": "queued",
                        "at": now,
                        "worker": None,
                        "reason": "submitted",
                    }
                    for job in batch
                ],
            )
        return [job_record_from_values(row) for row in rows]

    def delete_many(self, job_ids: list[str]) -> None:
        """Remove jobs that could not be handed to the broker (never accepted)."""
        with self.engine.begin() as conn:
            conn.execute(delete(job_history).where(job_history.c.job_id.in_(job_ids)))
            conn.execute(delete(jobs).where(jobs.c.id.in_(job_ids)))

    def _replay(self, job: NewJob) -> JobRecord:
        with self.reads.connect() as conn:
            row = conn.execute(
                select(jobs).where(
                    jobs.c.tenant == job.tenant,
                    jobs.c.idempotency_key == job.request.idempotency_key,
                )
            ).one()
        if row._mapping["request_hash"] != job.request_hash():
            raise Conflict(
                "this Idempotency-Key was already used with a different request body; "
                "use a new key for a new job"
            )
        return job_record(row)

    def delete(self, job_id: str) -> None:
        """Remove a job that could not be handed to the broker (never accepted)."""
        with self.engine.begin() as conn:
            conn.execute(delete(job_history).where(job_history.c.job_id == job_id))
            conn.execute(delete(jobs).where(jobs.c.id == job_id))

    # -- reads ---------------------------------------------------------------------------
    def get(
        self, job_id: str, tenant: str | None = None, *, history: bool = False
    ) -> JobRecord | None:
        with self.reads.connect() as conn:
            row = conn.execute(*_by_id(_RECORD, _RECORD_IN_TENANT, job_id, tenant)).first()
            if row is None:
                return None
            entries = None
            if history:
                rows = conn.execute(
                    select(job_history)
                    .where(job_history.c.job_id == job_id)
                    .order_by(job_history.c.id)
                ).all()
                entries = [history_entry(r) for r in rows]
        return job_record(row, entries)

    def status(self, job_id: str, tenant: str | None = None) -> JobStatus | None:
        """The job's state alone (within ``tenant``, unless None): one column, no record built.
        None if there is no such job (or another tenant's)."""
        with self.reads.connect() as conn:
            value = conn.execute(*_by_id(_STATUS, _STATUS_IN_TENANT, job_id, tenant)).scalar()
        return None if value is None else JobStatus(value)

    def routing(self, job_id: str) -> dict[str, Any] | None:
        """Internal fields a worker needs (reply queue, deadline, counters)."""
        with self.reads.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
        return dict(row._mapping) if row else None

    def idempotency_key_used(self, tenant: str, key: str) -> bool:
        """Whether ``tenant`` already submitted a job with this idempotency key."""
        query = select(jobs.c.id).where(jobs.c.tenant == tenant, jobs.c.idempotency_key == key)
        with self.reads.connect() as conn:
            return conn.execute(query).first() is not None

    def count_finished(self, job_ids: Iterable[str]) -> int:
        """How many of ``job_ids`` are in a terminal state."""
        query = select(func.count()).where(
            jobs.c.id.in_(list(job_ids)), jobs.c.status.in_([s.value for s in TERMINAL_STATES])
        )
        with self.reads.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def ping(self) -> None:
        """One round trip to the database (a readiness probe); raises if it does not answer."""
        with self.reads.connect() as conn:
            conn.execute(text("SELECT 1"))

    def count_queued(self, tenant: str) -> int:
        with self.reads.connect() as conn:
            value = conn.execute(
                select(func.count()).where(
                    jobs.c.tenant == tenant, jobs.c.status == JobStatus.QUEUED.value
                )
            ).scalar_one()
        return int(value)

    def count_queued_for_model(self, model: str, *, excluding_lane: str | None = None) -> int:
        """Queued jobs for ``model``, every tenant's (but those of ``excluding_lane``): what
        the OpenAI routes cap."""
        query = select(func.count()).where(
            jobs.c.status == JobStatus.QUEUED.value, jobs.c.model == model
        )
        if excluding_lane is not None:
            query = query.where(jobs.c.lane != excluding_lane)
        with self.reads.connect() as conn:
            return int(conn.execute(query).scalar_one())

    # Last in the class: a method named ``list`` shadows the builtin in annotations after it.
    def list(
        self,
        *,
        tenant: str | None,
        status: JobStatus | None = None,
        lane: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Newest first, cursor-paginated."""
        query = select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit + 1)
        if tenant is not None:
            query = query.where(jobs.c.tenant == tenant)
        if status is not None:
            query = query.where(jobs.c.status == status.value)
        if lane is not None:
            query = query.where(jobs.c.lane == lane)
        if cursor:
            at, job_id = decode_cursor(cursor)
            query = query.where(
                or_(jobs.c.created_at < at, and_(jobs.c.created_at == at, jobs.c.id < job_id))
            )
        with self.reads.connect() as conn:
            rows = conn.execute(query).all()
        records = [job_record(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = records[-1]
            next_cursor = encode_cursor(last.created_at, last.id)
        return Page(records, next_cursor)


def _by_id(
    anyone: Select[Any], in_tenant: Select[Any], job_id: str, tenant: str | None
) -> tuple[Select[Any], dict[str, str]]:
    """A built statement and its parameters: ``anyone``'s for ``tenant=None``, else
    ``in_tenant``'s."""
    if tenant is None:
        return anyone, {"job_id": job_id}
    return in_tenant, {"job_id": job_id, "tenant": tenant}


def _row_values(job: NewJob, now: datetime, dispatch_by: datetime) -> dict[str, Any]:
    """The ``jobs`` row of a newly accepted job."""
    req = job.request
    deadline = req.deadline
    if req.expires_in is not None:
        deadline = now + timedelta(seconds=req.expires_in)
    values: dict[str, Any] = {
        # If the producer dies between storing and publishing (or the message is lost), the
        # sweep re-sends the job after this; duplicates are harmless (CAS).
        "dispatch_by": dispatch_by,
        "id": job.id,
        "tenant": job.tenant,
        "status": JobStatus.QUEUED.value,
        "kind": req.kind.value,
        "model": job.model,
        "lane": job.lane,
        "priority": req.priority,
        "request": req.public_dump(),
        "metadata": dict(req.metadata),
        "attempts": 0,
        "crashes": 0,
        "reply_to": req.reply_to,
        "webhook_url": str(req.webhook_url) if req.webhook_url else None,
        "webhook_secret": req.webhook_secret,
        "idempotency_key": req.idempotency_key,
        "request_hash": job.request_hash(),
        "cancel_requested": False,
        "created_at": now,
        "deadline": deadline,
        "updated_at": now,
    }
    return values
