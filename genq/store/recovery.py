"""What the sweep and a stopping worker ask of the store: jobs that lost their worker or their
message, and the moves that put them back in the queue.

Each candidate read here is re-checked by the move's compare-and-set, so a renewal, a start or
another sweep in between wins and the move does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select, update

from genq.store.cas import LIKE_ESCAPE, Guard, like_prefix
from genq.store.tables import jobs
from genq.store.transitions import RUNNING, JobTransitions, LapsedLease
from schemas import JobKind, JobRecord, JobStatus

# Written to the history and read back by the metrics (``genq.store.metrics``).
RECOVERY_REASON_PREFIX = "lease lapsed"


@dataclass(frozen=True)
class StaleDispatch:
    """A queued job whose dispatch-by time passed: its message may have been lost."""

    job_id: str
    kind: JobKind
    tenant: str
    lane: str
    priority: int
    created_at: datetime
    dispatch_by: datetime


class JobRecovery(JobTransitions):
    """The recovery half of ``JobStore`` (which provides ``reads``)."""

    reads: Engine

    def lapsed_leases(self, now: datetime, limit: int = 100) -> list[LapsedLease]:
        """Running jobs whose worker stopped renewing: candidates for recovery."""
        query = (
            select(jobs.c.id, jobs.c.worker_id, jobs.c.crashes)
            .where(jobs.c.status == JobStatus.RUNNING.value, jobs.c.lease_expires_at < now)
            .limit(limit)
        )
        with self.reads.connect() as conn:
            rows = conn.execute(query).all()
        return [LapsedLease(job_id, worker, crashes, now) for job_id, worker, crashes in rows]

    def recover_lapsed(
        self, lease: LapsedLease, *, worker: str, dispatch_by: datetime
    ) -> JobRecord | None:
        """``running → queued`` for a job whose lease lapsed (one more crash counted), unless it
        was renewed, settled or recovered since; the caller sends it again (and the sweep once
        more after ``dispatch_by``, should that send be lost)."""
        moved = self._move(
            lease.job_id,
            JobStatus.QUEUED,
            sources=RUNNING,
            values={"crashes": lease.crashes + 1, "dispatch_by": dispatch_by},
            guards=frozenset({Guard.LAPSED}),
            params=lease.params(),
            worker=worker,
            reason=f"{RECOVERY_REASON_PREFIX} (worker {lease.worker_id}); recovered",
        )
        return moved.record if moved else None

    def hand_back(self, node: str, *, dispatch_by: datetime) -> list[JobRecord]:
        """``running → queued`` for every job the processes of worker ``node`` still hold (it
        is shutting down); the caller sends them again (and the sweep after ``dispatch_by``)."""
        pattern = like_prefix(f"{node}/")
        query = select(jobs.c.id).where(
            jobs.c.status == JobStatus.RUNNING.value,
            jobs.c.worker_id.like(pattern, escape=LIKE_ESCAPE),
        )
        with self.reads.connect() as conn:
            held = conn.execute(query).scalars().all()
        handed = []
        for job_id in held:
            moved = self._move(
                job_id,
                JobStatus.QUEUED,
                sources=RUNNING,
                values={"dispatch_by": dispatch_by},
                guards=frozenset({Guard.ON_NODE}),
                params={"node_pattern": pattern},
                worker=node,
                reason="worker shutdown: handed back",
            )
            if moved is not None:
                handed.append(moved.record)
        return handed

    def stale_dispatches(self, now: datetime, limit: int = 500) -> list[StaleDispatch]:
        """Queued jobs whose message should have been picked up by now: to be sent again."""
        c = jobs.c
        query = (
            select(c.id, c.kind, c.tenant, c.lane, c.priority, c.created_at, c.dispatch_by)
            .where(c.status == JobStatus.QUEUED.value, c.dispatch_by < now)
            .limit(limit)
        )
        with self.reads.connect() as conn:
            rows = conn.execute(query).all()
        return [
            StaleDispatch(row[0], JobKind(row[1]), row[2], row[3], row[4], row[5], row[6])
            for row in rows
        ]

    def claim_redispatch(self, stale: StaleDispatch, until: datetime) -> bool:
        """Claim the re-send of a stale job by moving its dispatch-by time to ``until``; a
        compare-and-set on the time the caller saw, so two sweeps do not both send it."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(jobs)
                .where(
                    jobs.c.id == stale.job_id,
                    jobs.c.status == JobStatus.QUEUED.value,
                    jobs.c.dispatch_by == stale.dispatch_by,
                )
                .values(dispatch_by=until)
            )
        return result.rowcount == 1

    def overdue_queued(self, now: datetime, limit: int = 500) -> list[str]:
        """Queued jobs past their deadline."""
        query = (
            select(jobs.c.id)
            .where(jobs.c.status == JobStatus.QUEUED.value, jobs.c.deadline < now)
            .limit(limit)
        )
        with self.reads.connect() as conn:
            return list(conn.execute(query).scalars().all())
