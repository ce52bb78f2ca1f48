"""``genq dlq``: list, inspect, requeue and purge dead letters."""

from __future__ import annotations

import getpass
import json
from typing import Annotated, NoReturn

import typer

from genq import dead_letters as dlq
from genq.celery_app import create_app
from genq.cli.broker_check import require_broker
from genq.cli.failure import EXIT_FAILED, EXIT_OK, fail
from genq.cli.tables import id_table, print_table
from genq.settings import Settings
from genq.store import JobStore, build_engine
from genq.store.migrate import upgrade_database
from schemas import GenqError, InvalidRequest

dlq_app = typer.Typer(no_args_is_help=True, help="Dead-letter queue: list, show, requeue, purge.")


def _store(settings: Settings) -> JobStore:
    upgrade_database(settings.store_url)
    return JobStore(build_engine(settings.store_url))


def _reachable(settings: Settings) -> None:
    """Requeue and purge need the broker: say so at once if it does not answer."""
    try:
        require_broker(settings)
    except GenqError as exc:
        fail(exc)


def _targets(ids: list[str] | None, all_: bool, store: JobStore) -> list[str]:
    if all_ and ids:
        fail(InvalidRequest("give dead-letter ids or --all, not both"))
    if all_:
        return [d.id for d in dlq.list_dead_letters(store, limit=100_000)]
    if not ids:
        fail(InvalidRequest("give one or more dead-letter (or job) ids, or --all"))
    return list(ids or [])


@dlq_app.command("list")
def list_cmd(
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Open dead letters, oldest first."""
    settings = Settings()
    letters = dlq.list_dead_letters(_store(settings), limit=limit)
    if as_json:
        typer.echo(json.dumps([d.summary() for d in letters], indent=2))
        return
    table = id_table("id", "job", "reason", "attempts", "error", "at", ids={"id", "job"})
    for d in letters:
        error = (d.error or {}).get("message", "")
        table.add_row(
            d.id,
            d.job_id or "-",
            d.reason,
            str(d.attempts),
            error[:60],
            d.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    print_table(table)
    typer.echo(f"{len(letters)} dead letter(s)")


@dlq_app.command("show")
def show(ident: str) -> None:
    """One dead letter in full (by dead-letter id or job id)."""
    try:
        letter = dlq.find_dead_letter(_store(Settings()), ident)
    except GenqError as exc:
        fail(exc)
    typer.echo(json.dumps(letter.summary(), indent=2))


@dlq_app.command("requeue")
def requeue(
    ids: Annotated[list[str] | None, typer.Argument()] = None,
    all_: Annotated[bool, typer.Option("--all", help="requeue every open dead letter")] = False,
) -> None:
    """Run dead-lettered jobs again: same job id, attempts reset, recorded in their history."""
    settings = Settings()
    _reachable(settings)
    store = _store(settings)
    app = create_app(settings)
    operator = f"cli:{getpass.getuser()}"
    targets = _targets(ids, all_, store)
    failures: list[GenqError] = []
    for ident in targets:
        try:
            typer.echo(json.dumps(dlq.requeue(app, store, settings, ident, operator=operator)))
        except GenqError as exc:
            failures.append(exc)
    _summary(len(targets), "requeued", failures)


@dlq_app.command("purge")
def purge(
    ids: Annotated[list[str] | None, typer.Argument()] = None,
    all_: Annotated[bool, typer.Option("--all", help="purge every open dead letter")] = False,
) -> None:
    """Drop dead letters for good (job records stay, marked dead_lettered)."""
    settings = Settings()
    _reachable(settings)
    store = _store(settings)
    app = create_app(settings)
    targets = _targets(ids, all_, store)
    failures: list[GenqError] = []
    for ident in targets:
        try:
            typer.echo(json.dumps(dlq.purge(app, store, ident)))
        except GenqError as exc:
            failures.append(exc)
    _summary(len(targets), "purged", failures)


def _summary(attempted: int, verb: str, failures: list[GenqError]) -> NoReturn:
    """Say how many were done ("0 requeued" too) on stderr, stdout keeping one JSON object per
    dead letter; then each failure in the stable error shape, the last line as with any
    failed command; then exit."""
    failed = f", {len(failures)} failed" if failures else ""
    typer.echo(f"{attempted - len(failures)} {verb}{failed}", err=True)
    for exc in failures:
        typer.echo(json.dumps(exc.to_body()), err=True)
    raise typer.Exit(EXIT_FAILED if failures else EXIT_OK)
