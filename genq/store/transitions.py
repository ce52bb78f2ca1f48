"""A job's state changes: the generic ``transition`` and the named ones with their own rules.

Each is one transaction: the compare-and-set (``genq.store.cas``), its history row, any row
that must commit with it (a dead letter), and for a terminal state the outbox rows that the
caller then publishes (``genq.outbox``), returned with the new record as a ``Transition``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Executable, bindparam, or_, update

from genq.store.cas import (
    Guard,
    Guards,
    Sources,
    compare_and_set,
    history_params,
    insert_history,
    with_history,
)
from genq.store.dead_letters import DeadLetterRow, insert_dead_letter, mark_requeued
from genq.store.outbox import NO_DELIVERIES, Deliveries, write_outbox
from genq.store.records import job_record
from genq.store.tables import jobs, utcnow
from schemas import ErrorInfo, JobRecord, JobStatus, sources_for

RUNNING = frozenset({JobStatus.RUNNING})
# Written to the history and read back by the metrics (``genq.store.metrics``).
RETRY_REASON_PREFIX = "retry"


@dataclass(frozen=True)
class Transition:
    """A compare-and-set this caller won: the job's new record and its outbox rows."""

    record: JobRecord
    deliveries: Deliveries = NO_DELIVERIES


@dataclass(frozen=True)
class LapsedLease:
    """A running job whose worker stopped renewing its lease, as the sweep found it."""

    job_id: str
    worker_id: str | None
    crashes: int
    seen_at: datetime  # the sweep's clock: the lease had lapsed by then

    def params(self) -> dict[str, Any]:
        """The compare-and-set's ``Guard.LAPSED``: still lapsed, still that worker's."""
        return {
            "now": self.seen_at,
            "lapsed_worker": self.worker_id,
            "lapsed_crashes": self.crashes,
        }


Also = Callable[[Connection, JobRecord], None]


class JobTransitions:
    """The state-changing half of ``JobStore`` (it provides ``engine``, ``redispatch_after``)."""

    engine: Engine
    redispatch_after: timedelta

    def transition(
        self,
        job_id: str,
        target: JobStatus,
        *,
        worker: str | None = None,
        reason: str | None = None,
        values: Mapping[str, Any] | None = None,
        only_from: frozenset[JobStatus] | None = None,
        only_worker: str | None = None,
    ) -> Transition | None:
        """Compare-and-set ``job_id`` into ``target`` from any state that may move there (or
        only ``only_from``, only while ``only_worker`` holds it); None if it lost."""
        allowed = sources_for(target) if only_from is None else only_from & sources_for(target)
        guards, params = _held_by(only_worker)
        return self._move(
            job_id,
            target,
            sources=frozenset(allowed),
            values=values or {},
            guards=guards,
            params=params,
            worker=worker,
            reason=reason,
        )

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
            if conn.dialect.name != "sqlite":  # PostgreSQL: with its history row, one statement
                history = history_params(
                    JobStatus.QUEUED, JobStatus.RUNNING, at=now, worker=worker, reason="started"
                )
                row = conn.execute(_start_with_history(), params | history).first()
                return job_record(row) if row is not None else None
            row = conn.execute(_start(), params).first()
            if row is None:
                return None
            insert_history(
                conn, job_id, JobStatus.QUEUED, JobStatus.RUNNING, at=now, worker=worker,
                reason="started",
            )  # fmt: skip
        return job_record(row)

    def renew_lease(self, job_id: str, worker: str, lease_seconds: float) -> bool:
        """Extend a running job's lease; False when the job is no longer this worker's."""
        params = {
            "job_id": job_id,
            "worker": worker,
            "lease_expires_at": utcnow() + timedelta(seconds=lease_seconds),
        }
        with self.engine.begin() as conn:
            return conn.execute(_renew(), params).rowcount == 1

    def request_cancel(self, job_id: str) -> None:
        """Flag the job: a queued one never starts, a running one stops between chunks."""
        with self.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(cancel_requested=True))

    def retry(
        self,
        job_id: str,
        *,
        worker: str,
        error: ErrorInfo,
        delay_seconds: float,
        lease_seconds: float,
    ) -> JobRecord | None:
        """``running → queued`` by the worker holding the job, to run again in
        ``delay_seconds``; if no worker has started it a lease after that, the sweep re-sends
        it. None if the job is no longer this worker's."""
        dispatch_by = utcnow() + timedelta(seconds=delay_seconds + lease_seconds)
        guards, params = _held_by(worker)
        moved = self._move(
            job_id,
            JobStatus.QUEUED,
            sources=RUNNING,
            values={"error": error.model_dump(mode="json"), "dispatch_by": dispatch_by},
            guards=guards,
            params=params,
            worker=worker,
            reason=f"{RETRY_REASON_PREFIX} in {delay_seconds:.1f}s after {error.code}",
        )
        return moved.record if moved else None

    def dead_letter(
        self,
        letter: DeadLetterRow,
        *,
        worker: str | None,
        holder: str | None = None,
        lapsed: LapsedLease | None = None,
    ) -> Transition | None:
        """Move ``letter.job_id`` to ``dead_lettered`` with its ``dead_letters`` row, in one
        transaction (an operator can always requeue what is dead-lettered). Only while
        ``holder`` holds the job, if given; or, for the sweep, only while ``lapsed`` is still
        the job's lapsed lease (counted as one more crash). None if another transition won."""
        if letter.job_id is None:
            raise ValueError("a dead letter without a job: record it with record_dead_letter")
        values: dict[str, Any] = {"error": letter.error.model_dump(mode="json")}
        sources, guards, params = sources_for(JobStatus.DEAD_LETTERED), *_held_by(holder)
        if holder is not None:
            sources = RUNNING
        if lapsed is not None:
            sources, guards, params = RUNNING, guards | {Guard.LAPSED}, params | lapsed.params()
            values["crashes"] = lapsed.crashes + 1
        return self._move(
            letter.job_id,
            JobStatus.DEAD_LETTERED,
            sources=frozenset(sources),
            values=values,
            guards=guards,
            params=params,
            worker=worker,
            reason=letter.reason,
            also=lambda conn, rec: insert_dead_letter(conn, letter, attempts=rec.attempts),
        )

    def requeue_dead_lettered(self, job_id: str, *, operator: str) -> JobRecord | None:
        """``dead_lettered → queued`` with fresh attempts (an operator's requeue, same job id);
        its open dead letters are closed in the same transaction. None if it is not
        dead-lettered."""
        now = utcnow()
        moved = self._move(
            job_id,
            JobStatus.QUEUED,
            sources=frozenset({JobStatus.DEAD_LETTERED}),
            values={
                "attempts": 0,
                "crashes": 0,
                "error": None,
                "finished_at": None,
                "cancel_requested": False,
            },
            worker=operator,
            reason=f"requeued from the dead-letter queue by {operator}",
            now=now,
            also=lambda conn, _rec: mark_requeued(conn, job_id, operator, now),
        )
        return moved.record if moved else None

    def _move(
        self,
        job_id: str,
        target: JobStatus,
        *,
        sources: Sources,
        values: Mapping[str, Any],
        guards: Guards = frozenset(),
        params: Mapping[str, Any] | None = None,
        worker: str | None,
        reason: str | None,
        now: datetime | None = None,
        also: Also | None = None,
    ) -> Transition | None:
        now = now or utcnow()
        with self.engine.begin() as conn:
            row = compare_and_set(
                conn,
                job_id,
                target,
                sources=sources,
                values=self._state_values(target, now, values),
                guards=guards,
                params=params,
                worker=worker,
                reason=reason,
                at=now,
            )
            if row is None:
                return None
            record = job_record(row)
            if also is not None:  # rows that must commit with this transition, or not at all
                also(conn, record)
            if not target.terminal:
                return Transition(record)
            m = row._mapping
            deliveries = write_outbox(
                conn,
                record,
                reply_to=m["reply_to"],
                webhook_url=m["webhook_url"],
                webhook_secret=m["webhook_secret"],
                now=now,
            )
        return Transition(record, deliveries)

    def _state_values(
        self, target: JobStatus, now: datetime, values: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The columns a move to ``target`` sets: a queued job has a dispatch-by time and no
        lease or worker, a finished one neither."""
        state: dict[str, Any] = {"status": target.value, "updated_at": now}
        if target.terminal:
            state.update(finished_at=now, lease_expires_at=None, dispatch_by=None)
        elif target is JobStatus.QUEUED:
            state.update(
                worker_id=None, lease_expires_at=None, dispatch_by=now + self.redispatch_after
            )
        return {**state, **values}


def _held_by(worker: str | None) -> tuple[Guards, dict[str, Any]]:
    if worker is None:
        return frozenset(), {}
    return frozenset({Guard.HELD_BY}), {"holder": worker}


@functools.cache
def _start() -> Executable:
    return (
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
            dispatch_by=None,
            attempts=jobs.c.attempts + 1,
            error=None,
        )
        .returning(*jobs.c)
    )


@functools.cache
def _start_with_history() -> Executable:
    return with_history(_start())


@functools.cache
def _renew() -> Executable:
    return (
        update(jobs)
        .where(
            jobs.c.id == bindparam("job_id"),
            jobs.c.status == JobStatus.RUNNING.value,
            jobs.c.worker_id == bindparam("worker"),
        )
        .values(lease_expires_at=bindparam("lease_expires_at", type_=jobs.c.lease_expires_at.type))
    )
