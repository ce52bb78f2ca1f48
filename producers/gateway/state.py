"""The gateway's per-process resources, built in its lifespan and closed on shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import httpx
import redis.asyncio as aioredis
from anyio import CapacityLimiter, to_thread
from celery import Celery
from fastapi import Request
from redis import Redis as SyncRedis

from genq import constants as c
from genq.celery_app import create_app
from genq.fleet.config import load_fleet
from genq.fleet.status import FleetStatus
from genq.runtime_health import RuntimeProbe
from genq.settings import Settings
from genq.store import JobStore, WalCheckpointer, build_engine
from genq.store.batches import BatchStore
from genq.store.files import FileStore
from genq.store.migrate import upgrade_database
from producers.api_keys import ApiKeyStore
from producers.fleet_models import FleetModels
from producers.gateway.batch_driver import BatchDriver
from producers.gateway.batcher import SubmitBatcher
from producers.gateway.batches import BatchLifecycle
from producers.gateway.cache import TtlCache
from producers.gateway.principal import Principal
from producers.gateway.quotas import QueuedGauge, RateLimiter
from producers.gateway.served_models import ServedModels
from producers.submission import WebhookCheck
from schemas import JobRecord, JobStatus, NotFound

T = TypeVar("T")


@dataclass
class Gateway:
    """Everything a request handler needs. The store and Celery are sync: use ``call``."""

    settings: Settings
    store: JobStore
    keys: ApiKeyStore
    redis: aioredis.Redis
    # The shared cancel path (``producers.cancel``) is sync and runs in a worker thread.
    sync_redis: SyncRedis
    celery: Celery
    runtime_http: httpx.Client
    runtime: RuntimeProbe
    limiter: RateLimiter
    key_cache: TtlCache[Principal]
    queued: QueuedGauge
    webhook_check: WebhookCheck | None
    # Threads for store and broker calls: few, since they share one GIL (and, on SQLite, one
    # store); more only make them contend. Other blocking work uses anyio's default pool.
    store_threads: CapacityLimiter
    # New jobs without an idempotency key are accepted in groups (see batcher.py).
    batcher: SubmitBatcher
    checkpointer: WalCheckpointer | None
    # What the OpenAI routes serve (``GET /v1/models``) and accept.
    models: ServedModels | FleetModels
    # The runtime fleet as operators see it (/v1/admin/runtimes, /readyz).
    fleet: FleetStatus
    # Files and batches (/v1/files, /v1/batches), and the thread that moves batches along.
    files: FileStore
    batches: BatchLifecycle
    batch_driver: BatchDriver
    # Cancellations waiting to see whether a client that hung up comes back (hangups.py).
    hangups: set[asyncio.Task[None]] = field(default_factory=set)

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run a blocking store (or store + broker) call in one of ``store_threads``."""
        return await to_thread.run_sync(function, *args, limiter=self.store_threads)

    async def find(self, job_id: str, tenant: str | None = None) -> JobRecord | None:
        """The job's record (within ``tenant``, unless None), read in a worker thread."""
        return await self.call(self.store.get, job_id, tenant)

    async def job(self, job_id: str, tenant: str | None) -> JobRecord:
        """The job if ``tenant`` may see it; another tenant's job is missing, exactly."""
        record = await self.find(job_id, tenant)
        if record is None:
            raise NotFound(f"no job {job_id}")
        return record

    async def status(self, job_id: str, tenant: str | None) -> JobStatus:
        """The job's state alone (cheaper than its record) if ``tenant`` may see it; another
        tenant's job is missing, exactly."""
        status = await self.call(self.store.status, job_id, tenant)
        if status is None:
            raise NotFound(f"no job {job_id}")
        return status

    def start(self) -> None:
        """Start the gateway's own threads: the submit batcher and the WAL checkpointer."""
        self.batcher.start()
        if self.checkpointer is not None:
            self.checkpointer.start()
        self.batch_driver.start()

    async def aclose(self) -> None:
        for task in self.hangups:
            task.cancel()
        await to_thread.run_sync(self.batcher.close)
        await to_thread.run_sync(self.batch_driver.close)
        if self.checkpointer is not None:
            await to_thread.run_sync(self.checkpointer.close)
        await self.redis.aclose()
        self.sync_redis.close()
        self.runtime_http.close()
        self.store.engine.dispose()
        self.celery.close()


def open_gateway(settings: Settings, webhook_check: WebhookCheck | None) -> Gateway:
    """Connect everything (lazily where the library allows) for one gateway process.

    Migrates the store first, as every genq entry point does (several gateway processes may
    start at once: migrations serialise in the database). Raises ``StoreUnavailable`` if the
    store cannot be reached or migrated.
    """
    upgrade_database(settings.store_url)
    # Request threads never run the SQLite WAL checkpoint inside a commit (see WalCheckpointer).
    engine = build_engine(settings.store_url, wal_autocheckpoint=False)
    runtime_http = httpx.Client(
        base_url=settings.effective_runtime_url,
        timeout=c.RUNTIME_HEALTH_TIMEOUT_SECONDS,
        headers=_runtime_headers(settings),
    )
    # Long polls and streams block in XREAD in slices shorter than the socket timeout
    # (see streaming.py), so the timeout only ever fires for a Redis that stopped answering.
    async_redis = aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=c.REDIS_SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=c.REDIS_CONNECT_TIMEOUT_SECONDS,
    )
    store = JobStore(
        engine,
        redispatch_after_seconds=settings.redispatch_after_seconds,
    )
    celery = create_app(settings)
    probe = RuntimeProbe(settings.runtime_kind, runtime_http)
    queued = QueuedGauge(store, settings.max_queued_per_tenant, c.GATEWAY_QUEUED_RECOUNT_SECONDS)
    sync_redis = SyncRedis.from_url(
        settings.redis_url,
        health_check_interval=30,
        socket_timeout=c.REDIS_SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=c.REDIS_CONNECT_TIMEOUT_SECONDS,
    )
    fleet = FleetStatus(settings, sync_redis)
    models: ServedModels | FleetModels = (
        FleetModels(fleet, settings.default_model, c.OPENAI_MODELS_CACHE_SECONDS)
        if load_fleet(settings).declared
        else ServedModels(probe, settings.default_model, c.OPENAI_MODELS_CACHE_SECONDS)
    )
    files = FileStore(engine)
    batches = BatchLifecycle(
        settings=settings,
        store=store,
        files=files,
        batches=BatchStore(engine, redispatch_after_seconds=settings.redispatch_after_seconds),
        celery=celery,
        redis=sync_redis,
        serves=models.serves,
    )
    return Gateway(
        settings=settings,
        store=store,
        keys=ApiKeyStore(engine),
        redis=async_redis,
        sync_redis=sync_redis,
        celery=celery,
        runtime_http=runtime_http,
        runtime=probe,
        limiter=RateLimiter(
            async_redis, rate=settings.rate_limit_per_second, burst=settings.rate_limit_burst
        ),
        key_cache=TtlCache(settings.gateway_key_cache_seconds),
        queued=queued,
        webhook_check=webhook_check,
        store_threads=CapacityLimiter(settings.gateway_threads),
        batcher=SubmitBatcher(celery, store, settings, queued),
        checkpointer=WalCheckpointer(engine) if engine.dialect.name == "sqlite" else None,
        models=models,
        fleet=fleet,
        files=files,
        batches=batches,
        batch_driver=BatchDriver(batches, sync_redis, settings.batch_drive_seconds),
    )


def _runtime_headers(settings: Settings) -> dict[str, str]:
    if settings.runtime_api_key is None:
        return {}
    return {"Authorization": f"Bearer {settings.runtime_api_key.get_secret_value()}"}


def gateway_of(request: Request) -> Gateway:
    """The gateway the lifespan put into the request's state."""
    return cast(Gateway, cast(Any, request.state).gateway)
