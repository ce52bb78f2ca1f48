"""The long-running processes: ``genq worker``, ``beat``, ``runtime``, ``gateway``, ``flower``
and ``metrics``. Each reads settings here and runs in the foreground until stopped."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from genq.cli.failure import fail
from genq.settings import Settings
from schemas import GenqError, InvalidRequest

__all__ = ["services_app"]

# Its commands join the top level of ``genq``.
services_app = typer.Typer()


@services_app.command()
def worker(
    lanes: Annotated[str | None, typer.Option(help="comma-separated lanes (default: all)")] = None,
    queues: Annotated[str, typer.Option(help="extra roles: webhooks,maintenance")] = "",
    concurrency: Annotated[int | None, typer.Option(help="default: the runtime's slots")] = None,
    pool: Annotated[str, typer.Option(help="prefork or threads")] = "prefork",
    name: Annotated[str | None, typer.Option(help="worker node name")] = None,
    loglevel: Annotated[str | None, typer.Option(help="default: GENQ_LOG_LEVEL")] = None,
) -> None:
    """Run a worker. An LLM worker's concurrency equals its runtime's parallel slots."""
    if "billiard.common" not in sys.modules:
        # billiard reads it once, when first imported (workers.main imports it): set now,
        # SIGTERM starts the cold shutdown without ensure_cold_sigterm re-executing genq.
        os.environ["REMAP_SIGTERM"] = "SIGQUIT"
    from workers.main import ensure_cold_sigterm, run_worker, worker_queues

    ensure_cold_sigterm()
    settings = Settings()
    lane_list = None if lanes is None else [x for x in lanes.split(",") if x]
    extra = [x for x in queues.split(",") if x]
    try:
        names = worker_queues(settings, lane_list, extra)
    except ValueError as exc:
        fail(InvalidRequest(str(exc)))
    run_worker(
        settings,
        queues=names,
        concurrency=concurrency,
        pool=pool,
        name=name,
        loglevel=loglevel or settings.log_level,
    )


@services_app.command()
def beat(
    loglevel: Annotated[str | None, typer.Option(help="default: GENQ_LOG_LEVEL")] = None,
) -> None:
    """Run the recovery/expiry/outbox sweep every sweep interval, one at a time across hosts."""
    from workers.main import run_beat

    run_beat(Settings(), loglevel=loglevel)


@services_app.command()
def runtime() -> None:
    """Run the embedded llama.cpp runtime (Gemma 3 270M) on loopback, in the foreground."""
    from workers.embedded import run_embedded

    raise typer.Exit(run_embedded(Settings()))


@services_app.command()
def gateway(
    host: Annotated[str | None, typer.Option(help="default: GENQ_GATEWAY_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="default: GENQ_GATEWAY_PORT")] = None,
    workers: Annotated[
        int | None, typer.Option(help="processes; default GENQ_GATEWAY_WORKERS")
    ] = None,
    access_log: Annotated[bool, typer.Option(help="log every request")] = False,
) -> None:
    """Serve the HTTP gateway (submit, poll, wait, stream, cancel) with uvicorn."""
    import uvicorn

    from genq.fleet.config import load_fleet
    from genq.logs import configure_logging

    settings = Settings()
    configure_logging(settings)
    load_fleet(settings)  # a runtimes file that cannot be used: say so now, in one line
    uvicorn.run(
        "producers.gateway.app:gateway_from_environment",
        factory=True,
        workers=workers or settings.gateway_workers,
        host=host or settings.gateway_host,
        port=settings.gateway_port if port is None else port,
        log_level=settings.log_level.lower(),
        access_log=access_log,
        log_config=None,  # keep genq's logging set-up
        server_header=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )


@services_app.command()
def flower() -> None:
    """Run Flower (task monitor) against genq's broker; basic auth from GENQ_FLOWER_BASIC_AUTH."""
    from workers.flower import run_flower

    try:
        run_flower(Settings())
    except GenqError as exc:
        fail(exc)


@services_app.command()
def metrics() -> None:
    """Serve Prometheus metrics on GENQ_METRICS_HOST:GENQ_METRICS_PORT at /metrics."""
    from genq.cli.exporter import serve_metrics

    serve_metrics(Settings())
