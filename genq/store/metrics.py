"""What a metrics scrape reads from the store: counts by state and outcome, and finished jobs.

One read-only connection per scrape: it never takes the SQLite writer lock, so a scrape does not
queue behind the workers' writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, case, func, select
from sqlalchemy.sql.elements import Label

from genq.store.engine import reader
from genq.store.recovery import RECOVERY_REASON_PREFIX
from genq.store.tables import dead_letters, job_history, jobs, webhook_attempts, webhook_deliveries
from genq.store.transitions import RETRY_REASON_PREFIX
from schemas import JobStatus

BATCH_ROWS = 2000


@dataclass(frozen=True)
class StoreCounts:
    """Counts of what the store holds (within retention)."""

    jobs: list[tuple[str, str, int]]  # (lane, status, count)
    retries: int  # running → queued after an error
    recoveries: int  # running → queued because the worker's lease lapsed
    dead_letters: list[tuple[str, int]]  # (reason, count)
    webhook_deliveries: list[tuple[str, int]]  # (status, count)
    webhook_attempts: list[tuple[str, int]]  # (success | http_error | network_error, count)


# A finished job's columns, as ``observe`` receives them.
FinishedJob = dict[str, Any]


def read_metrics(
    engine: Engine,
    *,
    finished_since: datetime | None,
    observe: Callable[[FinishedJob], None],
) -> StoreCounts:
    """Read the counts, and hand ``observe`` each job finished at or after ``finished_since``
    (every finished job when None), oldest first, streamed in batches."""
    with reader(engine).connect() as conn:
        by_status = conn.execute(
            select(jobs.c.lane, jobs.c.status, func.count()).group_by(jobs.c.lane, jobs.c.status)
        ).all()
        moves = conn.execute(
            select(
                func.count(case((job_history.c.reason.like(f"{RETRY_REASON_PREFIX}%"), 1))),
                func.count(case((job_history.c.reason.like(f"{RECOVERY_REASON_PREFIX}%"), 1))),
            ).where(
                job_history.c.from_status == JobStatus.RUNNING.value,
                job_history.c.to_status == JobStatus.QUEUED.value,
            )
        ).one()
        letters = conn.execute(
            select(dead_letters.c.reason, func.count()).group_by(dead_letters.c.reason)
        ).all()
        deliveries = conn.execute(
            select(webhook_deliveries.c.status, func.count()).group_by(webhook_deliveries.c.status)
        ).all()
        outcomes = select(_attempt_outcome()).subquery()
        attempts = conn.execute(
            select(outcomes.c.outcome, func.count()).group_by(outcomes.c.outcome)
        ).all()
        finished = (
            select(
                jobs.c.id,
                jobs.c.lane,
                jobs.c.kind,
                jobs.c.status,
                jobs.c.usage,
                jobs.c.created_at,
                jobs.c.started_at,
                jobs.c.first_token_at,
                jobs.c.finished_at,
            )
            .where(jobs.c.finished_at.is_not(None))
            .order_by(jobs.c.finished_at, jobs.c.id)
        )
        if finished_since is not None:
            finished = finished.where(jobs.c.finished_at >= finished_since)
        for row in conn.execution_options(yield_per=BATCH_ROWS).execute(finished):
            observe(dict(row._mapping))
    return StoreCounts(
        jobs=[(lane, status, count) for lane, status, count in by_status],
        retries=int(moves[0]),
        recoveries=int(moves[1]),
        dead_letters=[(reason, count) for reason, count in letters],
        webhook_deliveries=[(status, count) for status, count in deliveries],
        webhook_attempts=[(outcome, count) for outcome, count in attempts],
    )


def _attempt_outcome() -> Label[str]:
    # Grouped through a subquery: PostgreSQL does not match a GROUP BY expression whose
    # literals are separate parameters to the same expression in the select list.
    code = webhook_attempts.c.status_code
    return case(
        (code.is_(None), "network_error"),
        ((code >= 200) & (code < 300), "success"),
        else_="http_error",
    ).label("outcome")
