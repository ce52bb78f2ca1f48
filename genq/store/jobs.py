"""The job store: every state change is a compare-and-set with its history row."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ClauseElement,
    ColumnElement,
    Connection,
    Engine,
    Executable,
    and_,
    bindparam,
    delete,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from genq.constants import REDISPATCH_AFTER_SECONDS
from genq.store.engine import reader
from genq.store.outbox import write_outbox
from genq.store.records import history_entry, job_record, job_record_from_values
from genq.store.tables import job_history, jobs
from schemas import (
    TERMINAL_STATES,
    Conflict,
    GenqError,
    InvalidRequest,
    JobRecord,
    JobRequest,
    JobStatus,
    sources_for,
)
from schemas.errors import ErrorCode


def utcnow() -> datetime:
    return datetime.now(UTC)


class StoreUnavailable(GenqError):
    code = ErrorCode.INTERNAL
    retryable = True


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


class JobStore:
    """SQL-backed source of truth for jobs. Thread-safe; one per process."""

    def __init__(
        self,
        engine: Engine,
        *,
        default_webhook_secret: str | None = None,
        redispatch_after_seconds: float = REDISPATCH_AFTER_SECONDS,
    ) -> None:
        self.engine = engine
        self.redispatch_after = timedelta(seconds=redispatch_after_seconds)
        self.reads = reader(engine)
        self.default_webhook_secret = default_webhook_secret

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
                _history(conn, job.id, None, JobStatus.QUEUED, now, None, "submitted")
        except IntegrityError:
            if req.idempotency_key is None:
                raise
            return self._replay(job), False
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"result store unavailable: {exc.__class__.__name__}") from exc
        return job_record(row), True

    def create_many(self, batch: list[NewJob]) -> list[JobRecord]:
        """Insert many queued jobs in one transaction (no idempotency keys: use ``create``)."""
        if any(job.request.idempotency_key for job in batch):
            raise InvalidRequest("a batch cannot carry idempotency keys; submit those one by one")
        now = utcnow()
        rows = [_row_values(job, now, now + self.redispatch_after) for job in batch]
        try:
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
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"result store unavailable: {exc.__class__.__name__}") from exc
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
        query = select(jobs).where(jobs.c.id == job_id)
        if tenant is not None:
            query = query.where(jobs.c.tenant == tenant)
        with self.reads.connect() as conn:
            row = conn.execute(query).first()
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

    def routing(self, job_id: str) -> dict[str, Any] | None:
        """Internal fields a worker needs (reply queue, deadline, counters)."""
        with self.reads.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
        return dict(row._mapping) if row else None

    def count_queued(self, tenant: str) -> int:
        with self.reads.connect() as conn:
            value = conn.execute(
                select(func.count()).where(
                    jobs.c.tenant == tenant, jobs.c.status == JobStatus.QUEUED.value
                )
            ).scalar_one()
        return int(value)

    # -- transitions ---------------------------------------------------------------------
    def transition(
        self,
        job_id: str,
        target: JobStatus,
        *,
        worker: str | None = None,
        reason: str | None = None,
        values: dict[str, Any] | None = None,
        only_from: frozenset[JobStatus] | None = None,
        only_worker: str | None = None,
        extra_where: list[ColumnElement[bool]] | None = None,
        also: Callable[[Connection, JobRecord], None] | None = None,
    ) -> JobRecord | None:
        """Compare-and-set ``job_id`` into ``target``; the new record, or None if it lost.

        One ``UPDATE … WHERE id=? AND status IN (…) RETURNING *`` plus its history row (and, for
        a terminal state, its outbox rows) in one transaction.
        """
        now = utcnow()
        allowed = sources_for(target) if only_from is None else only_from & sources_for(target)
        new_values: dict[str, Any] = {"status": target.value, "updated_at": now, **(values or {})}
        if target in TERMINAL_STATES:
            new_values.setdefault("finished_at", now)
            new_values["lease_expires_at"] = None
        params: dict[str, Any] = {"job_id": job_id}
        if only_worker is not None:
            params["only_worker"] = only_worker
        statement: Executable
        if extra_where is None and not any(
            isinstance(v, ClauseElement) for v in new_values.values()
        ):
            # The common shapes (settle, requeue, cancel) are built and compiled once.
            statement = _cas_update(
                frozenset(allowed), only_worker is not None, tuple(sorted(new_values))
            )
            params.update({f"set_{k}": v for k, v in new_values.items()})
        else:  # rare shapes (the sweep's): built per call, same parameters for the CAS part
            statement = (
                update(jobs)
                .where(*_cas_where(frozenset(allowed), only_worker is not None), *extra_where or [])
                .values(**new_values)
                .returning(*jobs.c)
            )
        with self.engine.begin() as conn:
            source: JobStatus | None = next(iter(allowed)) if len(allowed) == 1 else None
            if source is None:  # several possible sources: read which one, for the history
                before = conn.execute(_cas_source(frozenset(allowed)), params).first()
                if before is None:
                    return None
                source = JobStatus(before[0])
            row = conn.execute(statement, params).first()
            if row is None:
                return None
            _history(conn, job_id, source, target, now, worker, reason)
            record = job_record(row)
            if also is not None:  # rows that must commit with this transition, or not at all
                also(conn, record)
            if target in TERMINAL_STATES:
                m = row._mapping
                record._webhook_deliveries = write_outbox(
                    conn,
                    record,
                    reply_to=m["reply_to"],
                    webhook_url=m["webhook_url"],
                    webhook_secret=m["webhook_secret"],
                    now=now,
                )
        return record

    def start(self, job_id: str, worker: str, lease_seconds: float) -> JobRecord | None:
        """``queued → running`` for ``worker`` with a fresh lease, unless it was cancelled or its
        deadline passed; None if it did not start (the caller finds out why)."""
        now = utcnow()
        params = {
            "job_id": job_id,
            "now": now,
            "worker": worker,
            "lease_expires_at": now + timedelta(seconds=lease_seconds),
        }
        with self.engine.begin() as conn:
            row = conn.execute(_START, params).first()
            if row is None:
                return None
            _history(conn, job_id, JobStatus.QUEUED, JobStatus.RUNNING, now, worker, "started")
        return job_record(row)

    def renew_lease(self, job_id: str, worker: str, lease_seconds: float) -> bool:
        """Extend a running job's lease; False when the job is no longer this worker's."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(jobs)
                .where(
                    jobs.c.id == job_id,
                    jobs.c.status == JobStatus.RUNNING.value,
                    jobs.c.worker_id == worker,
                )
                .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
            )
        return result.rowcount == 1

    def mark_first_token(self, job_id: str, worker: str, at: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(
                    jobs.c.id == job_id, jobs.c.worker_id == worker, jobs.c.first_token_at.is_(None)
                )
                .values(first_token_at=at)
            )

    def request_cancel(self, job_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(cancel_requested=True))

    def lapsed_leases(self, now: datetime, limit: int = 100) -> list[dict[str, Any]]:
        """Running jobs whose worker stopped renewing: candidates for recovery."""
        with self.reads.connect() as conn:
            rows = conn.execute(
                select(jobs.c.id, jobs.c.worker_id, jobs.c.crashes, jobs.c.attempts)
                .where(jobs.c.status == JobStatus.RUNNING.value, jobs.c.lease_expires_at < now)
                .limit(limit)
            ).all()
        return [dict(r._mapping) for r in rows]

    def stale_dispatches(self, now: datetime, limit: int = 500) -> list[dict[str, Any]]:
        """Queued jobs whose (retry) message should have been picked up by now: re-send them."""
        with self.reads.connect() as conn:
            rows = conn.execute(
                select(
                    jobs.c.id,
                    jobs.c.kind,
                    jobs.c.tenant,
                    jobs.c.lane,
                    jobs.c.priority,
                    jobs.c.created_at,
                    jobs.c.lease_expires_at,
                )
                .where(jobs.c.status == JobStatus.QUEUED.value, jobs.c.lease_expires_at < now)
                .limit(limit)
            ).all()
        return [dict(r._mapping) for r in rows]

    def push_dispatch_deadline(self, job_id: str, seen: datetime, until: datetime) -> bool:
        """Claim a re-send of a queued job: CAS on the dispatch-by time the caller saw, so two
        sweeps do not both re-send it."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(jobs)
                .where(
                    jobs.c.id == job_id,
                    jobs.c.status == JobStatus.QUEUED.value,
                    jobs.c.lease_expires_at == seen,
                )
                .values(lease_expires_at=until)
            )
        return result.rowcount == 1

    def overdue_queued(self, now: datetime, limit: int = 500) -> list[str]:
        """Queued jobs past their deadline."""
        with self.reads.connect() as conn:
            rows = conn.execute(
                select(jobs.c.id)
                .where(jobs.c.status == JobStatus.QUEUED.value, jobs.c.deadline < now)
                .limit(limit)
            ).all()
        return [r[0] for r in rows]

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


def _row_values(job: NewJob, now: datetime, dispatch_by: datetime) -> dict[str, Any]:
    """The ``jobs`` row of a newly accepted job."""
    req = job.request
    deadline = req.deadline
    if req.expires_in is not None:
        deadline = now + timedelta(seconds=req.expires_in)
    values: dict[str, Any] = {
        # Dispatch-by: if the producer dies between storing and publishing (or the message is
        # lost), the sweep re-sends the job after this; duplicates are harmless (CAS).
        "lease_expires_at": dispatch_by,
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


def _history(
    conn: Connection,
    job_id: str,
    source: JobStatus | None,
    target: JobStatus,
    at: datetime,
    worker: str | None,
    reason: str | None,
) -> None:
    conn.execute(
        _HISTORY_INSERT,
        {
            "job_id": job_id,
            "from_status": source.value if source else None,
            "to_status": target.value,
            "at": at,
            "worker": worker,
            "reason": reason,
        },
    )


# -- statements built once ---------------------------------------------------------------
# A worker runs the same few statements for every job; building a SQLAlchemy statement (and
# its cache key) each time cost more than executing it. These are built on first use and
# executed with parameters: ``job_id``, ``now``, ``only_worker`` and ``set_<column>``.

_HISTORY_INSERT = job_history.insert()


def _status_in(allowed: frozenset[JobStatus] | set[JobStatus]) -> ColumnElement[bool]:
    # The states are our own constants: inlined, so the statement has no expanding parameter.
    return jobs.c.status.in_([literal_column(f"'{s.value}'") for s in sorted(allowed)])


def _cas_where(allowed: frozenset[JobStatus], by_worker: bool) -> list[ColumnElement[bool]]:
    where = [jobs.c.id == bindparam("job_id"), _status_in(allowed)]
    if by_worker:
        where.append(jobs.c.worker_id == bindparam("only_worker"))
    return where


@functools.cache
def _cas_update(
    allowed: frozenset[JobStatus], by_worker: bool, columns: tuple[str, ...]
) -> Executable:
    values = {k: bindparam(f"set_{k}", type_=jobs.c[k].type) for k in columns}
    return update(jobs).where(*_cas_where(allowed, by_worker)).values(**values).returning(*jobs.c)


@functools.cache
def _cas_source(allowed: frozenset[JobStatus]) -> Executable:
    return select(jobs.c.status).where(jobs.c.id == bindparam("job_id"), _status_in(allowed))


_START = (
    update(jobs)
    .where(
        jobs.c.id == bindparam("job_id"),
        jobs.c.status == JobStatus.QUEUED.value,
        jobs.c.cancel_requested.is_(False),
        or_(
            jobs.c.deadline.is_(None),
            jobs.c.deadline > bindparam("now", type_=jobs.c.deadline.type),
        ),
    )
    .values(
        status=JobStatus.RUNNING.value,
        updated_at=bindparam("now", type_=jobs.c.updated_at.type),
        worker_id=bindparam("worker"),
        started_at=bindparam("now", type_=jobs.c.started_at.type),
        first_token_at=None,
        lease_expires_at=bindparam("lease_expires_at", type_=jobs.c.lease_expires_at.type),
        attempts=jobs.c.attempts + 1,
        error=None,
    )
    .returning(*jobs.c)
)
