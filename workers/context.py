"""Per-process resources a worker's tasks use, built on first use and closed on shutdown."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import httpx
import redis
from celery import Celery

from genq import constants as c
from genq.dispatch import fleet_dispatcher
from genq.fleet.config import fleet_dispatch
from genq.outbox import Outbox
from genq.settings import Settings
from genq.store import JobStore, build_engine
from workers.fleet_runtime import FleetSide
from workers.lease import LeaseWatch
from workers.runtime_gate import RuntimeGate
from workers.runtimes import Runtime, build_runtime


def runtime_client(settings: Settings) -> httpx.Client:
    """The one httpx client a runtime adapter gets; pooled, with generation-length timeouts."""
    headers = {}
    if settings.runtime_api_key is not None:
        headers["Authorization"] = f"Bearer {settings.runtime_api_key.get_secret_value()}"
    timeout = httpx.Timeout(
        connect=c.RUNTIME_CONNECT_TIMEOUT_SECONDS,
        read=settings.runtime_read_timeout_seconds,
        write=30.0,
        pool=30.0,
    )
    limits = httpx.Limits(max_connections=settings.runtime_slots * 2 + 2)
    return httpx.Client(
        base_url=settings.effective_runtime_url, headers=headers, timeout=timeout, limits=limits
    )


@dataclass
class WorkerContext:
    settings: Settings
    app: Celery
    store: JobStore
    redis: redis.Redis
    http: httpx.Client
    runtime: Runtime
    worker_id: str
    pid: int
    leases: LeaseWatch
    runtime_gate: RuntimeGate
    # This process's side of the runtime fleet, when jobs are dispatched through it.
    fleet: FleetSide | None = None

    @property
    def outbox(self) -> Outbox:
        """Settles this process's jobs and publishes what their transitions wrote."""
        return Outbox(self.app, self.store, self.redis, self.settings)

    def close(self) -> None:
        if self.fleet is not None:
            self.fleet.close()
        self.leases.close()
        self.http.close()
        self.redis.close()
        self.store.engine.dispose()


_current: WorkerContext | None = None
_lock = threading.Lock()


def node_name(app: Celery) -> str:
    """The Celery node this process belongs to (set by ``run_worker``), else the host name."""
    return str(getattr(app, "genq_node", None) or app.genq_settings.hostname)


def build_context(app: Celery) -> WorkerContext:
    settings: Settings = app.genq_settings
    engine = build_engine(settings.store_url)
    http = runtime_client(settings)
    store = JobStore(
        engine,
        redispatch_after_seconds=settings.redispatch_after_seconds,
    )
    client = redis.Redis.from_url(
        settings.redis_url, health_check_interval=30, socket_timeout=10, socket_connect_timeout=5
    )
    worker_id = f"{node_name(app)}/{os.getpid()}"
    runtime = build_runtime(settings.runtime_kind, http)
    return WorkerContext(
        settings=settings,
        app=app,
        store=store,
        redis=client,
        http=http,
        runtime=runtime,
        worker_id=worker_id,
        pid=os.getpid(),
        leases=LeaseWatch(
            store,
            client,
            worker=worker_id,
            lease_seconds=settings.lease_seconds,
            renew_seconds=settings.lease_renew_seconds,
        ),
        runtime_gate=RuntimeGate(
            probe=lambda: runtime.health().ok, wait_seconds=settings.runtime_wait_seconds
        ),
        fleet=FleetSide(settings, fleet_dispatcher(app, settings))
        if fleet_dispatch(settings)
        else None,
    )


def context_for(app: Celery) -> WorkerContext:
    """This process's context; rebuilt after a fork so no connection is shared across it."""
    global _current
    with _lock:
        if _current is None or _current.pid != os.getpid():
            _current = build_context(app)
        return _current


def close_context() -> None:
    global _current
    with _lock:
        if _current is not None and _current.pid == os.getpid():
            _current.close()
        _current = None


def start_fleet_side(app: Celery) -> None:
    """Start this process's fleet keeper (slot renewals, the dispatcher's tick), if any."""
    ctx = context_for(app)
    if ctx.fleet is not None:
        ctx.fleet.start()
