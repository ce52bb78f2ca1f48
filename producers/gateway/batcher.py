"""Group commit for ``POST /v1/jobs``: the jobs that arrive while one group is being written
are accepted together, in one store transaction and over one broker connection.

With one request per transaction, concurrent submissions queue for the store (SQLite has one
writer) and each waits again for the GIL after every statement; a group pays that once. A
job keeps every guarantee of the one-by-one path: it is answered only after it is stored and
published, and a job the broker refused is removed again and answered with that error.
Jobs with an idempotency key still go one by one (``routes_jobs.accept``): their replay and
conflict checks read the store. The request handler validates the job (``new_job``) before
handing it over, so a webhook's DNS check never holds up a group.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from dataclasses import dataclass

from celery import Celery

from genq.settings import Settings
from genq.store import JobStore, NewJob
from producers.gateway.quotas import QueuedGauge
from producers.submission import publish_stored
from schemas import GenqError, JobRecord

log = logging.getLogger(__name__)

# Enough to cover every concurrent client of a busy gateway; a bigger backlog waits a group.
MAX_GROUP = 256


@dataclass
class _Pending:
    job: NewJob
    future: asyncio.Future[JobRecord]
    loop: asyncio.AbstractEventLoop


class SubmitBatcher:
    """One writer thread; ``submit`` hands it a job and awaits the job's record (or error).

    Building one starts nothing: ``start()`` starts the thread (the gateway's lifespan does),
    ``close()`` stops it.
    """

    def __init__(
        self, celery: Celery, store: JobStore, settings: Settings, queued: QueuedGauge
    ) -> None:
        self.celery = celery
        self.store = store
        self.settings = settings
        self.queued = queued
        self._inbox: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="genq-submit", daemon=True)

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    async def submit(self, job: NewJob) -> JobRecord:
        """Accept ``job`` (validated, no idempotency key): its queued record, or the
        ``GenqError`` that refused it."""
        if not self._thread.is_alive():
            raise RuntimeError("the submit batcher is not running: start() it first")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[JobRecord] = loop.create_future()
        self._inbox.put(_Pending(job, future, loop))
        return await future

    def close(self) -> None:
        """Stop the writer thread once it has answered what it was handed."""
        if not self._thread.is_alive():
            return
        self._inbox.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            first = self._inbox.get()
            if first is None:
                return
            group = [first]
            while len(group) < MAX_GROUP:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._inbox.put(None)  # finish this group, then stop
                    break
                group.append(item)
            try:
                self._accept(group)
            except Exception as exc:  # never leave a request waiting
                log.exception("submit group of %d failed", len(group))
                for pending in group:
                    _answer(pending, exc)

    def _accept(self, group: list[_Pending]) -> None:
        ready: list[_Pending] = []
        for pending in group:
            try:
                self.queued.check(pending.job.tenant)
            except GenqError as exc:
                _answer(pending, exc)
                continue
            ready.append(pending)
            self.queued.accepted(pending.job.tenant)  # counted now, so the cap holds in a group
        if not ready:
            return
        try:
            records = self.store.create_many([pending.job for pending in ready])
        except GenqError as exc:
            for pending in ready:
                _answer(pending, exc)
            return
        sent, error = publish_stored(self.celery, self.store, self.settings, records)
        for pending, record in zip(ready[:sent], records[:sent], strict=True):
            _answer(pending, record)
        if error is not None:  # the rest were removed from the store again
            for pending in ready[sent:]:
                _answer(pending, error)


def _answer(pending: _Pending, outcome: JobRecord | BaseException) -> None:
    def resolve() -> None:
        if pending.future.done():  # the client went away
            return
        if isinstance(outcome, BaseException):
            pending.future.set_exception(outcome)
        else:
            pending.future.set_result(outcome)

    pending.loop.call_soon_threadsafe(resolve)
