"""``genq webhooks``: endpoints (add, list, remove, enable, rotate-secret), the delivery log,
and redelivery. Every command reads settings here and works on the store directly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

import typer

from genq import constants as c
from genq.cli.failure import fail
from genq.cli.tables import id_table, print_table
from genq.settings import Settings
from genq.store import JobStore
from schemas import GenqError

webhooks_app = typer.Typer(
    no_args_is_help=True, help="Webhooks: endpoints, deliveries, redelivery."
)
endpoints_app = typer.Typer(no_args_is_help=True, help="Per-tenant webhook endpoints.")
webhooks_app.add_typer(endpoints_app, name="endpoints")

JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


@contextmanager
def _store(settings: Settings) -> Iterator[JobStore]:
    from genq.store import build_engine
    from genq.store.migrate import upgrade_database

    try:
        upgrade_database(settings.store_url)
    except GenqError as exc:
        fail(exc)
    store = JobStore(build_engine(settings.store_url))
    try:
        yield store
    except GenqError as exc:
        fail(exc)
    finally:
        store.engine.dispose()


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "-"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


@endpoints_app.command("add")
def add_cmd(
    tenant: Annotated[str, typer.Option(help="tenant whose jobs it receives")],
    url: Annotated[str, typer.Option(help="receiver URL (http or https)")],
    events: Annotated[str | None, typer.Option(help="comma-separated; default all")] = None,
    secret: Annotated[str | None, typer.Option(help="whsec_… (default: generate one)")] = None,
    thin: Annotated[bool, typer.Option("--thin", help="send only the job id and status")] = False,
) -> None:
    """Register an endpoint. Prints its signing secret once: store it now."""
    from producers.webhook_admin import add_endpoint

    settings = Settings()
    with _store(settings) as store:
        created = add_endpoint(
            store, settings, tenant=tenant, url=url, events=events, secret=secret, thin=thin
        )
    _print_json({**created.endpoint.public(), "secret": created.secret})
    typer.echo("Store this secret now: genq does not show it again.", err=True)


@endpoints_app.command("list")
def list_cmd(
    tenant: Annotated[str | None, typer.Option(help="only this tenant's")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Registered endpoints (secrets are never shown)."""
    from genq.store.webhook_endpoints import list_endpoints

    with _store(Settings()) as store:
        found = [e.public() for e in list_endpoints(store.engine, tenant)]
    if as_json:
        _print_json(found)
        return
    table = id_table(
        "id", "tenant", "url", "events", "thin", "state", "secrets", "created", ids={"id"}
    )
    for e in found:
        state = "enabled" if e["enabled"] else f"disabled: {e['disabled_reason']}"
        table.add_row(
            e["id"],
            e["tenant"],
            e["url"],
            ",".join(e["events"]),
            str(e["thin"]),
            state,
            str(len(e["secrets"])),
            _when(e["created_at"]),
        )
    print_table(table)


@endpoints_app.command("remove")
def remove_cmd(endpoint_id: str) -> None:
    """Delete an endpoint; its pending deliveries stop."""
    from producers.webhook_admin import remove_endpoint

    with _store(Settings()) as store:
        remove_endpoint(store, endpoint_id)
    typer.echo(json.dumps({"id": endpoint_id, "removed": True}))


@endpoints_app.command("enable")
def enable_cmd(endpoint_id: str) -> None:
    """Re-enable an endpoint that a 410 Gone disabled."""
    from producers.webhook_admin import enable_endpoint

    with _store(Settings()) as store:
        _print_json(enable_endpoint(store, endpoint_id).public())


@endpoints_app.command("rotate-secret")
def rotate_cmd(
    endpoint_id: str,
    overlap_seconds: Annotated[
        float, typer.Option(help="how long the old secret keeps signing too", min=0)
    ] = c.WEBHOOK_ROTATION_OVERLAP_SECONDS,
    secret: Annotated[str | None, typer.Option(help="whsec_… (default: generate one)")] = None,
) -> None:
    """Give an endpoint a new secret; both sign during the overlap. Prints the new one once."""
    from producers.webhook_admin import rotate_secret

    with _store(Settings()) as store:
        rotated = rotate_secret(store, endpoint_id, overlap_seconds=overlap_seconds, secret=secret)
    _print_json({**rotated.endpoint.public(), "secret": rotated.secret})
    typer.echo("Store this secret now: genq does not show it again.", err=True)


@webhooks_app.command("deliveries")
def deliveries_cmd(
    job: Annotated[str | None, typer.Option("--job", help="only this job's")] = None,
    event: Annotated[str | None, typer.Option("--event", help="only this event's")] = None,
    status: Annotated[
        str | None, typer.Option(help="pending, succeeded, failed, exhausted or disabled")
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="only this tenant's")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    as_json: JsonFlag = False,
) -> None:
    """The delivery log, newest first."""
    from producers.webhook_admin import deliveries

    with _store(Settings()) as store:
        found = deliveries(
            store, job_id=job, event_id=event, status=status, tenant=tenant, limit=limit
        )
    if as_json:
        _print_json([d.public() for d in found])
        return
    headers = ("delivery", "event", "type", "job", "url", "status", "tries", "last", "next")
    table = id_table(*headers, ids={"delivery", "event", "job"})
    for d in found:
        last = str(d.last_status_code or d.last_error or "-")
        table.add_row(
            d.id,
            d.event_id,
            d.event_type,
            d.job_id,
            d.url,
            d.status,
            str(d.attempts),
            last[:50],
            _when(d.next_attempt_at),
        )
    print_table(table)
    typer.echo(f"{len(found)} deliver{'y' if len(found) == 1 else 'ies'}")


@webhooks_app.command("attempts")
def attempts_cmd(delivery_id: str, as_json: JsonFlag = False) -> None:
    """Every attempt of one delivery: time, status, latency, error, response excerpt."""
    from producers.webhook_admin import delivery_attempts

    with _store(Settings()) as store:
        delivery, attempts = delivery_attempts(store, delivery_id)
    if as_json:
        _print_json({**delivery.public(), "attempts": [a.public() for a in attempts]})
        return
    table = id_table("at", "status", "latency ms", "error", "response", ids=())
    for a in attempts:
        latency = "-" if a.latency_ms is None else f"{a.latency_ms:.1f}"
        table.add_row(
            _when(a.at),
            str(a.status_code or "-"),
            latency,
            a.error or "",
            (a.response_excerpt or "")[:60],
        )
    print_table(table)


@webhooks_app.command("redeliver")
def redeliver_cmd(event_id: str) -> None:
    """Send an event again to its endpoints (same webhook-id, so receivers can dedupe)."""
    from genq.celery_app import create_app
    from producers.webhook_admin import redeliver

    settings = Settings()
    app = create_app(settings)
    try:
        with _store(settings) as store:
            due = redeliver(app, store, event_id)
    finally:
        app.close()
    typer.echo(json.dumps({"event_id": event_id, "deliveries": due}))
