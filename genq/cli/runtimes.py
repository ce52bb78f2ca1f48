"""``genq runtimes``: the runtime fleet as a table (endpoint, kind, models, slots, in flight,
state, errors, time to first token) and the jobs waiting per model; ``--json`` for scripts."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from genq.cli.failure import fail
from genq.settings import Settings
from schemas import BrokerUnavailable

__all__ = ["runtimes_app"]

runtimes_app = typer.Typer()


@runtimes_app.command()
def runtimes(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Show the runtime fleet: each endpoint's models, slots, requests in flight and health."""
    import redis
    from rich.table import Table

    from genq.cli.tables import print_table
    from genq.fleet.config import FleetConfigError
    from genq.fleet.status import FleetStatus
    from genq.logs import redact_text

    settings = Settings()
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        status = FleetStatus(settings, client)
        rows = status.endpoints()
        waiting = status.waiting()
    except FleetConfigError as exc:
        fail(exc)
    except redis.RedisError:
        fail(BrokerUnavailable(f"cannot read Redis at {redact_text(settings.redis_url)}"))
    finally:
        client.close()
    if as_json:
        print(json.dumps({"endpoints": [r.to_json() for r in rows], "waiting": waiting}))
        return
    table = Table(title="runtime endpoints")
    for header in (
        "endpoint",
        "kind",
        "url",
        "models",
        "slots",
        "in flight",
        "state",
        "errors",
        "requests",
        "ttft ms",
    ):
        table.add_column(header, overflow="fold")
    for row in rows:
        state = row.state if row.state != "cooldown" else "[red]cooldown[/red]"
        table.add_row(
            row.name,
            row.kind,
            row.url,
            ", ".join(row.models) or "(none listed)",
            str(row.slots),
            str(row.in_flight),
            state,
            str(row.errors),
            str(row.requests),
            "" if row.ttft_ms is None else f"{row.ttft_ms:.0f}",
        )
    print_table(table)
    if waiting:
        backlog = Table(title="waiting for a slot")
        backlog.add_column("model")
        backlog.add_column("jobs", justify="right")
        for model, count in sorted(waiting.items()):
            backlog.add_row(model, str(count))
        print_table(backlog)
