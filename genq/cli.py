"""The ``genq`` command. Each command reads settings here and passes them down."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, NoReturn

import typer

from genq.settings import Settings
from schemas import GenqError, JobRecord

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="genq: LLM jobs on a queue.",
)
# These configure genq's logging, which reports unknown GENQ_* variables in their own log.
LOGGING_COMMANDS = frozenset({"worker", "beat", "gateway", "flower", "metrics"})


@app.callback()
def _report_unknown_env(ctx: typer.Context) -> None:
    """genq: LLM jobs on a queue."""
    if ctx.invoked_subcommand not in LOGGING_COMMANDS:
        import os

        from genq.settings import unknown_env_warnings

        for message in unknown_env_warnings(os.environ):
            typer.echo(f"genq: warning: {message}", err=True)


def fail(exc: GenqError, exit_code: int = 1) -> NoReturn:
    """Print the stable error shape and exit; never a traceback for a user's mistake."""
    typer.echo(json.dumps(exc.to_body()), err=True)
    raise typer.Exit(2 if exc.code.value == "invalid_request" else exit_code)


def emit(record: JobRecord | dict[str, Any]) -> None:
    data = (
        record.model_dump(mode="json", exclude_none=True)
        if isinstance(record, JobRecord)
        else record
    )
    typer.echo(json.dumps(data, indent=2))


def _request_from_options(
    kind: str,
    prompt: str | None,
    system: str | None,
    inputs: list[str] | None,
    request_json: str | None,
) -> dict[str, Any]:
    if request_json is not None:
        if request_json == "-":
            raw = sys.stdin.read()
        else:
            with open(request_json) as source:
                raw = source.read()
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            from schemas import InvalidRequest

            fail(InvalidRequest(f"--json is not valid JSON: {exc.msg} at line {exc.lineno}"))
        return dict(data) if isinstance(data, dict) else {"_": data}
    body: dict[str, Any] = {"kind": kind}
    if kind == "chat":
        messages = [{"role": "system", "content": system}] if system else []
        if prompt is not None:
            messages.append({"role": "user", "content": prompt})
        body["messages"] = messages
    elif kind == "completion":
        body["prompt"] = prompt
    else:
        body["input"] = inputs if inputs else prompt
    return body


@app.command()
def submit(
    prompt: Annotated[str | None, typer.Argument(help="user message / prompt / text")] = None,
    kind: Annotated[str, typer.Option(help="chat, completion or embedding")] = "chat",
    model: Annotated[str | None, typer.Option()] = None,
    system: Annotated[str | None, typer.Option(help="system message (chat)")] = None,
    inputs: Annotated[list[str] | None, typer.Option("--input", help="embedding input")] = None,
    priority: Annotated[int, typer.Option(help="0-9, 9 most urgent")] = 5,
    lane: Annotated[str | None, typer.Option()] = None,
    max_tokens: Annotated[int | None, typer.Option()] = None,
    temperature: Annotated[float | None, typer.Option()] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    reply_to: Annotated[str | None, typer.Option()] = None,
    webhook_url: Annotated[str | None, typer.Option()] = None,
    webhook_secret: Annotated[
        str | None, typer.Option(help="whsec_… signing the webhook (default GENQ_WEBHOOK_SECRET)")
    ] = None,
    metadata: Annotated[list[str] | None, typer.Option(help="key=value, repeatable")] = None,
    request_json: Annotated[
        str | None, typer.Option("--json", help="request file, or - for stdin")
    ] = None,
    wait: Annotated[bool, typer.Option(help="wait and print the result")] = False,
    timeout: Annotated[float | None, typer.Option(help="seconds to wait")] = None,
) -> None:
    """Submit a job; prints its id (or, with --wait, its final record)."""
    from producers.client import GenqClient

    body = _request_from_options(kind, prompt, system, inputs, request_json)
    if request_json is None:
        options = {
            "model": model,
            "priority": priority,
            "lane": lane,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "seed": seed,
            "reply_to": reply_to,
            "webhook_url": webhook_url,
            "webhook_secret": webhook_secret,
        }
        body.update({k: v for k, v in options.items() if v is not None})
        if metadata:
            body["metadata"] = dict(item.partition("=")[::2] for item in metadata)
    with GenqClient(_reachable_settings()) as client:
        try:
            record = client.submit(body)
            if not wait:
                typer.echo(record.id)
                return
            emit(client.wait(record.id, timeout=timeout))
        except GenqError as exc:
            fail(exc)


@app.command()
def status(
    job_id: str,
    history: Annotated[bool, typer.Option("--history", help="show every transition")] = False,
) -> None:
    """Print a job's record."""
    from producers.client import GenqClient

    with GenqClient(Settings(), tenant="*") as client:
        try:
            emit(client.get(_job_id(job_id), history=history))
        except GenqError as exc:
            fail(exc)


@app.command("wait")
def wait_cmd(
    job_id: str,
    timeout: Annotated[float | None, typer.Option(help="seconds")] = None,
) -> None:
    """Wait until a job is finished and print its record."""
    from producers.client import GenqClient

    with GenqClient(_reachable_settings(), tenant="*") as client:
        try:
            emit(client.wait(_job_id(job_id), timeout=timeout))
        except GenqError as exc:
            fail(exc)


@app.command()
def watch(
    job_id: str,
    starting_after: Annotated[int | None, typer.Option(help="resume after this seq")] = None,
) -> None:
    """Print a job's tokens live as they are generated."""
    from producers.client import GenqClient

    with GenqClient(_reachable_settings(), tenant="*") as client:
        try:
            for chunk in client.stream(_job_id(job_id), starting_after=starting_after):
                if chunk.type == "delta":
                    typer.echo(chunk.delta, nl=False)
                elif chunk.type == "reset":
                    typer.echo("\n[retrying: output restarts]", err=True)
                elif chunk.final:
                    typer.echo("")
                    typer.echo(json.dumps(chunk.data), err=True)
        except GenqError as exc:
            fail(exc)


@app.command()
def cancel(job_id: str) -> None:
    """Cancel a job: a queued one never runs, a running one stops within a second."""
    from producers.client import GenqClient

    with GenqClient(_reachable_settings(), tenant="*") as client:
        try:
            outcome = client.cancel(_job_id(job_id))
        except GenqError as exc:
            fail(exc)
        typer.echo(
            json.dumps(
                {
                    "id": outcome.record.id,
                    "outcome": outcome.outcome,
                    "status": outcome.record.status.value,
                }
            )
        )


@app.command()
def worker(
    lanes: Annotated[str | None, typer.Option(help="comma-separated lanes (default: all)")] = None,
    queues: Annotated[str, typer.Option(help="extra roles: webhooks,maintenance")] = "",
    concurrency: Annotated[int | None, typer.Option(help="default: the runtime's slots")] = None,
    pool: Annotated[str, typer.Option(help="prefork or threads")] = "prefork",
    name: Annotated[str | None, typer.Option(help="worker node name")] = None,
    loglevel: Annotated[str | None, typer.Option(help="default: GENQ_LOG_LEVEL")] = None,
) -> None:
    """Run a worker. An LLM worker's concurrency equals its runtime's parallel slots."""
    from workers.main import ensure_cold_sigterm, run_worker, worker_queues

    ensure_cold_sigterm()
    settings = Settings()
    lane_list = None if lanes is None else [x for x in lanes.split(",") if x]
    extra = [x for x in queues.split(",") if x]
    try:
        names = worker_queues(settings, lane_list, extra)
    except ValueError as exc:
        from schemas import InvalidRequest

        fail(InvalidRequest(str(exc)))
    run_worker(
        settings,
        queues=names,
        concurrency=concurrency,
        pool=pool,
        name=name,
        loglevel=loglevel or settings.log_level,
    )


@app.command()
def beat(
    loglevel: Annotated[str | None, typer.Option(help="default: GENQ_LOG_LEVEL")] = None,
) -> None:
    """Run the recovery/expiry/outbox sweep every sweep interval, one at a time across hosts."""
    from workers.main import run_beat

    run_beat(Settings(), loglevel=loglevel)


@app.command()
def runtime() -> None:
    """Run the embedded llama.cpp runtime (Gemma 3 270M) on loopback, in the foreground."""
    from workers.embedded import run_embedded

    raise typer.Exit(run_embedded(Settings()))


def _reachable_settings() -> Settings:
    """Settings for a command that needs the broker, which must answer first (in seconds)."""
    from genq.broker_check import require_broker

    settings = Settings()
    try:
        require_broker(settings)
    except GenqError as exc:
        fail(exc)
    return settings


def _job_id(value: str) -> str:
    import uuid

    from schemas import InvalidRequest

    try:
        return str(uuid.UUID(value))
    except ValueError:
        fail(InvalidRequest(f"{value!r} is not a job id (a UUID)"))


from producers.cli_dlq import dlq_app  # noqa: E402

app.add_typer(dlq_app, name="dlq")

from producers.cli_gateway import register as register_gateway_commands  # noqa: E402

register_gateway_commands(app)  # `genq gateway`, `genq keys …`

from genq.cli_ops import db_app, ops_app  # noqa: E402  (up, flower, metrics, stats, db)

app.add_typer(ops_app)
app.add_typer(db_app, name="db")

from producers.cli_webhooks import webhooks_app  # noqa: E402

app.add_typer(webhooks_app, name="webhooks")


def broker_unreachable(exc: BaseException) -> GenqError | None:
    """A Redis/kombu connection failure as ``broker_unavailable``, whichever command met it."""
    from genq.broker_check import as_broker_unavailable

    try:
        settings = Settings()
    except Exception:  # the environment is broken too: the failure itself is the news
        return None
    return as_broker_unavailable(exc, settings)


def main() -> None:
    """Run the CLI; an unexpected failure prints the stable error shape, not a traceback."""
    import logging

    try:
        app()
    except GenqError as exc:
        typer.echo(json.dumps(exc.to_body()), err=True)
        raise SystemExit(2 if exc.code.value == "invalid_request" else 1) from None
    except Exception as exc:  # last resort: name the failure, keep the details in the log
        logging.getLogger("genq.cli").debug("unexpected failure", exc_info=True)
        unreachable = broker_unreachable(exc)
        if unreachable is not None:
            typer.echo(json.dumps(unreachable.to_body()), err=True)
            raise SystemExit(1) from None
        body = {
            "error": {
                "code": "internal",
                "details": [],
                "message": f"{exc.__class__.__name__}: {str(exc)[:300]} "
                "(re-run with GENQ_LOG_LEVEL=DEBUG for details)",
            }
        }
        typer.echo(json.dumps(body), err=True)
        raise SystemExit(1) from None
