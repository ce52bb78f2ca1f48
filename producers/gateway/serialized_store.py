"""The gateway's view of the job store: on SQLite, this process's store calls run one at a time.

SQLite has one writer at a time. Without this, the gateway's threads would queue for it in
SQLite's busy handler (or on the writer lock file, ``genq.store.sqlite_writer_lock``), which
wakes them late: seen as a p99 of over a second under 20 concurrent submits. A process-wide
mutex hands the store to the next thread as soon as the previous call returns. The broker
publish that follows a store write is outside it, so it overlaps with the next thread's store
work. Reads are serialized too, though in WAL mode they need no lock at all.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine

from genq.store import JobStore, NewJob, Page, Transition
from schemas import JobRecord, JobStatus


class SerializedStore(JobStore):
    """A ``JobStore`` whose calls from this process's threads run one at a time on SQLite."""

    def __init__(self, engine: Engine, **options: Any) -> None:
        super().__init__(engine, **options)
        self.serializes = engine.dialect.name == "sqlite"
        self._mutex = threading.RLock()  # re-entrant: create() calls get()

    @contextlib.contextmanager
    def one_call_at_a_time(self) -> Iterator[None]:
        """Hold the store for one call (a no-op on a store with concurrent writers)."""
        if not self.serializes:
            yield
            return
        with self._mutex:
            yield

    def create(self, job: NewJob) -> tuple[JobRecord, bool]:
        with self.one_call_at_a_time():
            return super().create(job)

    def create_many(self, batch: list[NewJob]) -> list[JobRecord]:
        with self.one_call_at_a_time():
            return super().create_many(batch)

    def delete_many(self, job_ids: list[str]) -> None:
        with self.one_call_at_a_time():
            super().delete_many(job_ids)

    def delete(self, job_id: str) -> None:
        with self.one_call_at_a_time():
            super().delete(job_id)

    def get(
        self, job_id: str, tenant: str | None = None, *, history: bool = False
    ) -> JobRecord | None:
        with self.one_call_at_a_time():
            return super().get(job_id, tenant, history=history)

    def list(self, **query: Any) -> Page:
        with self.one_call_at_a_time():
            return super().list(**query)

    def count_queued(self, tenant: str) -> int:
        with self.one_call_at_a_time():
            return super().count_queued(tenant)

    def transition(self, job_id: str, target: JobStatus, **options: Any) -> Transition | None:
        with self.one_call_at_a_time():
            return super().transition(job_id, target, **options)

    def requeue_dead_lettered(self, job_id: str, *, operator: str) -> JobRecord | None:
        with self.one_call_at_a_time():
            return super().requeue_dead_lettered(job_id, operator=operator)

    def request_cancel(self, job_id: str) -> None:
        with self.one_call_at_a_time():
            super().request_cancel(job_id)
