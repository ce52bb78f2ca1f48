"""The gateway's view of the job store: on SQLite, its threads take turns.

SQLite has one writer at a time, and genq's engine opens every transaction ``IMMEDIATE`` (reads
too), so the gateway's threads would otherwise queue inside SQLite's busy handler, which sleeps
with a backoff of up to 100 ms: seen as a p99 of over a second under 20 concurrent submits.
A lock wakes the next thread as soon as the store is free. The broker publish that follows a
store write is outside the lock, so it overlaps with the next thread's store work.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine

from genq.store import JobStore, NewJob, Page
from schemas import JobRecord, JobStatus


class TurnTakingStore(JobStore):
    """A ``JobStore`` whose calls from this process's threads run one at a time on SQLite."""

    def __init__(self, engine: Engine, **options: Any) -> None:
        super().__init__(engine, **options)
        self.takes_turns = engine.dialect.name == "sqlite"
        self._turn = threading.RLock()  # re-entrant: create() calls get()

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the store for one call (a no-op on a store with concurrent writers)."""
        if not self.takes_turns:
            yield
            return
        with self._turn:
            yield

    def create(self, job: NewJob) -> tuple[JobRecord, bool]:
        with self.turn():
            return super().create(job)

    def create_many(self, batch: list[NewJob]) -> list[JobRecord]:
        with self.turn():
            return super().create_many(batch)

    def delete_many(self, job_ids: list[str]) -> None:
        with self.turn():
            super().delete_many(job_ids)

    def delete(self, job_id: str) -> None:
        with self.turn():
            super().delete(job_id)

    def get(
        self, job_id: str, tenant: str | None = None, *, history: bool = False
    ) -> JobRecord | None:
        with self.turn():
            return super().get(job_id, tenant, history=history)

    def list(self, **query: Any) -> Page:
        with self.turn():
            return super().list(**query)

    def count_queued(self, tenant: str) -> int:
        with self.turn():
            return super().count_queued(tenant)

    def transition(self, job_id: str, target: JobStatus, **options: Any) -> JobRecord | None:
        with self.turn():
            return super().transition(job_id, target, **options)

    def request_cancel(self, job_id: str) -> None:
        with self.turn():
            super().request_cancel(job_id)
