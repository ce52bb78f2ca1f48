"""``GenqClient``: what a Python service uses to submit jobs and get their results."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import redis
from kombu import Connection

from genq import constants as c
from genq.celery_app import create_app
from genq.chunks import Chunk, follow, last_chunk, read_chunks
from genq.fleet.config import load_fleet
from genq.fleet.status import FleetStatus
from genq.outbox import reply_queue
from genq.settings import Settings
from genq.store import JobStore, build_engine
from genq.store.migrate import upgrade_database
from producers.cancel import CancelOutcome, cancel_job
from producers.fleet_models import FleetModels
from producers.submission import submit_job, submit_many
from producers.webhooks import webhook_submit_check
from schemas import JobRecord, JobRequest, NotFound
from schemas.errors import ErrorCode, GenqError
from schemas.validation import parse


class WaitTimeout(GenqError):
    code = ErrorCode.TIMEOUT


class GenqClient:
    """Submit, inspect, wait for, stream and cancel jobs, talking to the broker and store directly.

    Build one per process and ``close()`` it (or use it as a context manager). Building one
    connects to nothing: the result store is migrated and opened by ``open()`` (which ``with``
    calls), or else at first use.
    """

    def __init__(self, settings: Settings, *, tenant: str = "default") -> None:
        self.settings = settings
        self.tenant = tenant
        self.app = create_app(settings)
        # kombu reads without a timeout: a publish to a Redis that stopped answering would
        # never return. (Workers keep kombu's default; their reads are event-driven.)
        self.app.conf.broker_transport_options = {
            **self.app.conf.broker_transport_options,
            "socket_timeout": c.REDIS_SOCKET_TIMEOUT_SECONDS,
        }
        self._store: JobStore | None = None
        self._opening = threading.Lock()
        self._redis: redis.Redis | None = None
        self._models: FleetModels | None = None

    def open(self) -> GenqClient:
        """Migrate the result store to the newest schema and open it; once, however often
        called. Raises ``StoreUnavailable`` if the store cannot be reached or migrated."""
        self._open_store()
        return self

    @property
    def store(self) -> JobStore:
        """The result store, opened (and migrated) at first use."""
        if self._store is not None:
            return self._store
        return self._open_store()

    def _open_store(self) -> JobStore:
        with self._opening:
            if self._store is None:
                upgrade_database(self.settings.store_url)
                self._store = JobStore(
                    build_engine(self.settings.store_url),
                    redispatch_after_seconds=self.settings.redispatch_after_seconds,
                )
            return self._store

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            # wait/stream block in slices shorter than this (genq.chunks): it only fires for
            # a Redis that stopped answering, whatever redis-py's own default.
            self._redis = redis.Redis.from_url(
                self.settings.redis_url,
                socket_timeout=c.REDIS_SOCKET_TIMEOUT_SECONDS,
                socket_connect_timeout=c.REDIS_CONNECT_TIMEOUT_SECONDS,
            )
        return self._redis

    def submit(
        self, request: JobRequest | dict[str, Any], *, job_id: str | None = None
    ) -> JobRecord:
        """Validate and enqueue one job; returns its queued record (id included)."""
        req = request if isinstance(request, JobRequest) else parse(JobRequest, request)
        self._check_models([req])
        record, _created = submit_job(
            self.app,
            self.store,
            self.settings,
            req,
            tenant=self.tenant,
            job_id=job_id,
            webhook_check=webhook_submit_check(self.settings),
        )
        return record

    def submit_many(self, requests: Iterable[JobRequest | dict[str, Any]]) -> list[JobRecord]:
        """Validate every request first (a bad one enqueues nothing), then store the batch in
        one transaction and publish it over one connection. Requests with an idempotency key
        make the whole batch go one by one. Records come back in request order."""
        parsed = [r if isinstance(r, JobRequest) else parse(JobRequest, r) for r in requests]
        self._check_models(parsed)
        if any(r.idempotency_key for r in parsed):
            return [self.submit(r) for r in parsed]
        check = webhook_submit_check(self.settings)
        return submit_many(
            self.app, self.store, self.settings, parsed, tenant=self.tenant, webhook_check=check
        )

    def _check_models(self, requests: Iterable[JobRequest]) -> None:
        """With a declared runtime fleet, refuse a job whose model no endpoint serves
        (``UnknownModel``, ``model_not_found``, listing the models there are), as the gateway
        does; the one-runtime settings accept any name (the runtime decides)."""
        if not load_fleet(self.settings).declared:
            return
        if self._models is None:
            self._models = FleetModels(
                FleetStatus(self.settings, self.redis),
                self.settings.default_model,
                c.OPENAI_MODELS_CACHE_SECONDS,
            )
        for request in requests:
            self._models.check(request.model or self.settings.default_model)

    def get(self, job_id: str, *, history: bool = False) -> JobRecord:
        record = self.store.get(job_id, self._scope(), history=history)
        if record is None:
            raise NotFound(f"no job {job_id}")
        return record

    def wait(self, job_id: str, timeout: float | None = None) -> JobRecord:
        """Block until the job is terminal (woken by its chunk stream's final entry; the
        store is read again only then, or after a second without one), however long it is
        queued; ``WaitTimeout`` after ``timeout`` seconds, ``BrokerUnavailable`` if Redis is
        lost."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self.get(job_id)
            if record.status.terminal:
                return record
            last = last_chunk(self.redis, job_id)
            seq = last.seq if last else 0
            if last is not None and last.final:
                record = self.get(job_id)
                if record.status.terminal:
                    return record  # it finished between the two reads
                last = None  # an end from before the job was requeued: wait for newer ones
            recheck = time.monotonic() + 1.0
            while last is None or not last.final:  # skip the deltas, up to the final entry
                now = time.monotonic()
                remaining = min(recheck, deadline or recheck) - now
                if remaining <= 0:
                    break
                chunks = read_chunks(
                    self.redis, job_id, after_seq=seq, block_ms=max(1, int(remaining * 1000))
                )
                if chunks:
                    seq, last = chunks[-1].seq, chunks[-1]
            if deadline is not None and time.monotonic() >= deadline:
                record = self.get(job_id)
                if record.status.terminal:
                    return record
                raise WaitTimeout(f"job {job_id} is still {record.status.value} after {timeout}s")

    def stream(self, job_id: str, starting_after: int | None = None) -> Iterator[Chunk]:
        """Chunks as they are generated, after ``starting_after``; ends with the final one.
        Waits for a queued job however long; ``BrokerUnavailable`` if Redis is lost."""
        self.get(job_id)
        return follow(self.redis, job_id, after_seq=starting_after or 0)

    def cancel(self, job_id: str) -> CancelOutcome:
        return cancel_job(
            self.app, self.store, self.redis, self.settings, job_id, tenant=self._scope()
        )

    def replies(self, queue: str, *, timeout: float = 5.0) -> Iterator[JobRecord]:
        """Terminal records published to ``queue`` (the ``reply_to`` of your jobs), each acked
        after it is yielded. Stops after ``timeout`` seconds without a message."""
        with Connection(self.settings.redis_url) as conn:
            simple = conn.SimpleQueue(reply_queue(queue), serializer="json")
            try:
                while True:
                    try:
                        message = simple.get(block=True, timeout=timeout)
                    except simple.Empty:
                        return
                    yield JobRecord.model_validate(message.payload)
                    message.ack()
            finally:
                simple.close()

    def _scope(self) -> str | None:
        return None if self.tenant == "*" else self.tenant

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
        if self._store is not None:
            self._store.engine.dispose()
        self.app.close()

    def __enter__(self) -> GenqClient:
        return self.open()

    def __exit__(self, *_exc: object) -> None:
        self.close()
