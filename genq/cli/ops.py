"""Operator commands: ``genq up`` (the local stack), ``stats`` and ``db upgrade|current``.

``ops_app``'s commands join the top level of ``genq``; ``db_app`` is ``genq db``.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from genq.cli.failure import fail
from genq.settings import Settings
from schemas import BrokerUnavailable, Conflict, GenqError

__all__ = ["db_app", "genq_commands", "ops_app"]

ops_app = typer.Typer()
db_app = typer.Typer(no_args_is_help=True, help="The result store's schema (Alembic).")


def genq_commands(ctx: typer.Context) -> set[str]:
    """The top-level `genq` subcommands that exist in this installation."""
    return set(getattr(ctx.find_root().command, "commands", {}))


@ops_app.command()
def up(
    ctx: typer.Context,
    demo: Annotated[bool, typer.Option(help="run the demonstration once everything is ready")] = (
        False
    ),
    exit_after: Annotated[
        bool, typer.Option("--exit", help="stop everything after the demonstration")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="show every component's full output, not only its problems"
        ),
    ] = False,
) -> None:
    """Run the whole stack on loopback (Redis, runtime, workers, beat, gateway, Flower).

    Each component's output goes to ``<data dir>/logs/<name>.log``; a crashed one is restarted.
    """
    from genq.cli.demo import run_demo
    from genq.cli.stack.run import run_stack
    from genq.stack_file import read_running_stack

    settings = Settings()
    running = read_running_stack(settings.data_dir)
    if running is not None:  # its file would otherwise configure this one
        fail(
            Conflict(
                f"genq up is already running for {settings.data_dir} (pid {running.pid}); "
                "stop it first, or give this one another GENQ_DATA_DIR"
            )
        )
    try:
        code = run_stack(
            settings,
            genq_commands(ctx),
            demo=run_demo if demo else None,
            exit_after=exit_after,
            verbose=verbose,
            output=sys.stdout,
        )
    except GenqError as exc:
        fail(exc)
    raise typer.Exit(code)


@ops_app.command()
def stats() -> None:
    """Print queue depth, jobs, timings and recorded outcomes as tables."""
    from genq.cli.broker_check import require_broker
    from genq.cli.stats import print_stats
    from genq.logs import redact_text
    from genq.metrics import build_registry, metric_samples
    from genq.store import StoreUnavailable
    from genq.store.migrate import upgrade_database

    settings = Settings()
    try:
        require_broker(settings)
        upgrade_database(settings.store_url)  # says why the store cannot be read, if it cannot
    except GenqError as exc:
        fail(exc)
    registry, collector = build_registry(settings)
    try:
        samples = list(metric_samples(registry))
    finally:
        collector.close()
    down = {
        labels["component"] for name, labels, v in samples if name == "genq_component_up" and not v
    }
    if "broker" in down:
        fail(BrokerUnavailable(f"cannot read the broker at {redact_text(settings.redis_url)}"))
    if "store" in down:
        fail(StoreUnavailable(f"cannot read the result store {redact_text(settings.store_url)}"))
    print_stats(samples)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the result store to the newest schema (safe to run at every start)."""
    from genq.store.migrate import upgrade_database

    settings = Settings()
    try:
        revision = upgrade_database(settings.store_url)
    except GenqError as exc:
        fail(exc)
    typer.echo(f"result store at revision {revision} (head)")


@db_app.command("current")
def db_current() -> None:
    """Print the store's revision and the newest one this genq ships."""
    from genq.store.migrate import current_revision, head_revision

    settings = Settings()
    try:
        current = current_revision(settings.store_url)
    except GenqError as exc:
        fail(exc)
    head = head_revision()
    state = "up to date" if current == head else "needs `genq db upgrade`"
    typer.echo(f"current {current or 'none'}; head {head}; {state}")
