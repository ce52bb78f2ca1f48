"""``genq submit``, ``status``, ``wait``, ``watch`` and ``cancel``: one job at a time, through
:class:`producers.GenqClient`."""

from __future__ import annotations

import json
import sys
import uuid
from typing import Annotated, Any

import typer

from genq.cli.failure import fail
from genq.settings import Settings
from schemas import GenqError, InvalidRequest, JobRecord

__all__ = ["jobs_app"]

# Its commands join the top level of ``genq``.
jobs_app = typer.Typer()


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


@jobs_app.command()
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


@jobs_app.command()
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


@jobs_app.command("wait")
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


@jobs_app.command()
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


@jobs_app.command()
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


def _reachable_settings() -> Settings:
    """Settings for a command that needs the broker, which must answer first (in seconds)."""
    from genq.cli.broker_check import require_broker

    settings = Settings()
    try:
        require_broker(settings)
    except GenqError as exc:
        fail(exc)
    return settings


def _job_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        fail(InvalidRequest(f"{value!r} is not a job id (a UUID)"))
