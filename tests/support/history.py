"""Reading a job's transition history from the store."""

from __future__ import annotations

from sqlalchemy import select

from genq.store import JobStore
from genq.store.tables import job_history


def recovered_by(store: JobStore, job_id: str) -> list[str]:
    """The workers (``node/pid``) that requeued ``job_id`` after its lease lapsed, in order."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(job_history.c.worker)
            .where(job_history.c.job_id == job_id, job_history.c.reason.like("lease lapsed%"))
            .order_by(job_history.c.id)
        ).all()
    return [row[0] for row in rows]
