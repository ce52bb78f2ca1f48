"""``genq batch submit|status|list|cancel|download``: OpenAI-style batches from the command line.

The commands work on the store and broker directly, as ``genq submit`` does: a file is stored
as ``/v1/files`` would store it and the batch accepted as ``POST /v1/batches`` would accept it
(the same checks, the same jobs). ``--wait`` also moves the batch along while it waits (under
the same lock as the gateways), so it finishes even with no gateway running.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import redis
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from genq import constants as c
from genq.cli.failure import fail
from genq.cli.tables import id_table, print_table
from genq.settings import Settings
from genq.store.batches import FINAL, StoredBatch
from schemas import GenqError, InvalidRequest, NotFound

if TYPE_CHECKING:  # the gateway's modules load only when a batch command runs
    from producers.gateway.batches import BatchLifecycle

__all__ = ["batch_app"]

batch_app = typer.Typer(
    no_args_is_help=True, help="OpenAI-style batches: a JSONL file of requests."
)
POLL_SECONDS = 0.5


@contextmanager
def _lifecycle(settings: Settings) -> Iterator[tuple[BatchLifecycle, redis.Redis]]:
    from genq.celery_app import create_app
    from genq.store import JobStore, build_engine
    from genq.store.batches import BatchStore
    from genq.store.files import FileStore
    from genq.store.migrate import upgrade_database
    from producers.gateway.batches import BatchLifecycle

    upgrade_database(settings.store_url)
    engine = build_engine(settings.store_url)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=c.REDIS_SOCKET_TIMEOUT_SECONDS)
    app = create_app(settings)
    lifecycle = BatchLifecycle(
        settings=settings,
        store=JobStore(engine, redispatch_after_seconds=settings.redispatch_after_seconds),
        files=FileStore(engine),
        batches=BatchStore(engine, redispatch_after_seconds=settings.redispatch_after_seconds),
        celery=app,
        redis=client,
    )
    try:
        yield lifecycle, client
    finally:
        app.close()
        client.close()
        engine.dispose()


def _read_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(c.FILE_CHUNK_BYTES):
            yield chunk


def _emit(data: dict[str, Any]) -> None:
    typer.echo(json.dumps(data, indent=2))


def _get(lifecycle: BatchLifecycle, batch_id: str) -> StoredBatch:
    batch = lifecycle.batches.get(batch_id, None)
    if batch is None:
        fail(NotFound(f"no batch {batch_id}"))
    return batch


@batch_app.command()
def submit(
    path: Annotated[Path, typer.Argument(help="JSONL: one request per line", exists=True)],
    endpoint: Annotated[str, typer.Option(help="the lines' url")] = "/v1/chat/completions",
    tenant: Annotated[str, typer.Option()] = "default",
    priority: Annotated[int | None, typer.Option(help="0-9, 9 most urgent (default 2)")] = None,
    metadata: Annotated[list[str] | None, typer.Option(help="key=value, repeatable")] = None,
    wait: Annotated[bool, typer.Option(help="show progress and wait until it ends")] = False,
) -> None:
    """Upload FILE and start a batch; prints its id (with --wait, the finished batch)."""
    from producers.gateway.batch_requests import check_new_batch

    settings = Settings()
    if path.stat().st_size > settings.files_max_bytes:
        fail(InvalidRequest(f"{path} is larger than GENQ_FILES_MAX_BYTES"))
    body: dict[str, Any] = {"endpoint": endpoint, "completion_window": "24h"}
    if metadata:
        body["metadata"] = dict(item.partition("=")[::2] for item in metadata)
    with _lifecycle(settings) as (lifecycle, client):
        try:
            stored = lifecycle.files.write(tenant, path.name, "batch", _read_chunks(path))
            wanted = check_new_batch(
                {**body, "input_file_id": stored.id}, None if priority is None else str(priority)
            )
            batch = lifecycle.create(tenant, wanted)
        except GenqError as exc:
            fail(exc)
        if not wait:
            batch = _until_queued(lifecycle, client, batch)  # its lines checked, or failed
            typer.echo(batch.id)
            if batch.status == "failed":
                _emit(lifecycle.view(batch))
                raise typer.Exit(1)
            return
        final = _wait(lifecycle, client, batch)
        _emit(lifecycle.view(final))
        if final.status != "completed":
            raise typer.Exit(1)


def _until_queued(
    lifecycle: BatchLifecycle, client: redis.Redis, batch: StoredBatch
) -> StoredBatch:
    """Check and queue the batch's lines here (or wait for a gateway's driver doing it)."""
    from producers.gateway.batch_driver import drive_once

    while batch.status == "validating":
        if drive_once(lifecycle, client) is None:  # a gateway holds the lock: it drives
            time.sleep(POLL_SECONDS)
        batch = _get(lifecycle, batch.id)
    return batch


def _wait(lifecycle: BatchLifecycle, client: redis.Redis, batch: StoredBatch) -> StoredBatch:
    """Poll (and move along) the batch until it is final, with a progress bar on stderr."""
    from producers.gateway.batch_driver import drive_once

    # Sized for an 80-column terminal (or a pipe, which rich takes as one): the id goes on a
    # line of its own, or the last columns (elapsed, ETA) were cut to "0:0…".
    columns = (
        TextColumn("{task.description}"),
        BarColumn(bar_width=16),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TextColumn("{task.fields[rate]:.1f} lines/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    started = time.monotonic()
    console = Console(stderr=True)
    console.print(batch.id, highlight=False)
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(batch.status, total=batch.total or None, failed=0, rate=0.0)
        while True:
            current = _get(lifecycle, batch.id)
            counts = lifecycle.batches.counts(batch.id)
            done = counts.completed + counts.failed
            rate = done / max(time.monotonic() - started, 1e-3)
            progress.update(
                task,
                total=current.total or None,
                completed=done,
                failed=counts.failed,
                rate=rate,
                description=current.status,
            )
            if current.status in FINAL:
                return current
            drive_once(lifecycle, client)
            time.sleep(POLL_SECONDS)


@batch_app.command()
def status(batch_id: str) -> None:
    """Print a batch (OpenAI's batch object)."""
    with _lifecycle(Settings()) as (lifecycle, _client):
        _emit(lifecycle.view(_get(lifecycle, batch_id)))


@batch_app.command("list")
def list_cmd(
    tenant: Annotated[str | None, typer.Option(help="one tenant's (default: all)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
) -> None:
    """The newest batches."""
    with _lifecycle(Settings()) as (lifecycle, _client):
        table = id_table(
            "id", "tenant", "status", "endpoint", "done", "failed", "total", ids={"id"}
        )
        for batch in lifecycle.batches.page(tenant, after=None, limit=limit):
            counts = lifecycle.view(batch)["request_counts"]
            table.add_row(
                batch.id,
                batch.tenant,
                batch.status,
                batch.endpoint,
                str(counts["completed"]),
                str(counts["failed"]),
                str(counts["total"]),
            )
        print_table(table)


@batch_app.command()
def cancel(batch_id: str) -> None:
    """Cancel a batch: queued lines never run, running ones stop, finished ones are kept."""
    with _lifecycle(Settings()) as (lifecycle, _client):
        try:
            batch = lifecycle.cancel(batch_id, None)
        except GenqError as exc:
            fail(exc)
        _emit(lifecycle.view(batch))


@batch_app.command()
def download(
    batch_id: str,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="default: stdout")] = None,
    errors: Annotated[bool, typer.Option("--errors", help="the error file instead")] = False,
) -> None:
    """Write a finished batch's output (or error) file."""
    with _lifecycle(Settings()) as (lifecycle, _client):
        batch = _get(lifecycle, batch_id)
        file_id = batch.error_file_id if errors else batch.output_file_id
        if file_id is None:
            which = "error" if errors else "output"
            fail(NotFound(f"batch {batch_id} ({batch.status}) has no {which} file"))
        sink = output.open("wb") if output is not None else sys.stdout.buffer
        try:
            for chunk in lifecycle.files.chunks(file_id):
                sink.write(chunk)
        finally:
            if output is not None:
                sink.close()
            else:
                sink.flush()
