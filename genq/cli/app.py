"""The ``genq`` command: its commands, gathered from their modules, and the last-resort
handling that keeps a failure to one line in the stable error shape."""

from __future__ import annotations

import json
import logging
import os

import typer

from genq.cli.batch import batch_app
from genq.cli.broker import broker_app
from genq.cli.dlq import dlq_app
from genq.cli.failure import EXIT_FAILED, exit_code
from genq.cli.jobs import jobs_app
from genq.cli.keys import keys_app
from genq.cli.ops import db_app, ops_app
from genq.cli.runtimes import runtimes_app
from genq.cli.services import services_app
from genq.cli.webhooks import webhooks_app
from genq.settings import Settings
from schemas import GenqError

__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="genq: LLM jobs on a queue.",
)
app.add_typer(jobs_app)  # submit, status, wait, watch, cancel
app.add_typer(services_app)  # worker, beat, runtime, gateway, flower, metrics
app.add_typer(ops_app)  # up, stats
app.add_typer(runtimes_app)  # runtimes
app.add_typer(db_app, name="db")
app.add_typer(dlq_app, name="dlq")
app.add_typer(keys_app, name="keys")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(batch_app, name="batch")
app.add_typer(broker_app, name="broker")

# These configure genq's logging, which reports unknown GENQ_* variables in their own log.
LOGGING_COMMANDS = frozenset({"worker", "beat", "gateway", "flower", "metrics"})


@app.callback()
def _report_unknown_env(ctx: typer.Context) -> None:
    """genq: LLM jobs on a queue."""
    if ctx.invoked_subcommand not in LOGGING_COMMANDS:
        from genq.settings import unknown_env_warnings

        for message in unknown_env_warnings(os.environ):
            typer.echo(f"genq: warning: {message}", err=True)


def broker_unreachable(exc: BaseException) -> GenqError | None:
    """A Redis/kombu connection failure as ``broker_unavailable``, whichever command met it."""
    from genq.cli.broker_check import as_broker_unavailable

    try:
        settings = Settings()
    except Exception:  # the environment is broken too: the failure itself is the news
        return None
    return as_broker_unavailable(exc, settings)


def main() -> None:
    """Run the CLI; an unexpected failure prints the stable error shape, not a traceback."""
    try:
        app()
    except GenqError as exc:
        typer.echo(json.dumps(exc.to_body()), err=True)
        raise SystemExit(exit_code(exc)) from None
    except Exception as exc:  # last resort: name the failure, keep the details in the log
        logging.getLogger("genq.cli").debug("unexpected failure", exc_info=True)
        unreachable = broker_unreachable(exc)
        if unreachable is not None:
            typer.echo(json.dumps(unreachable.to_body()), err=True)
            raise SystemExit(exit_code(unreachable)) from None
        body = {
            "error": {
                "code": "internal",
                "details": [],
                "message": f"{exc.__class__.__name__}: {str(exc)[:300]} "
                "(re-run with GENQ_LOG_LEVEL=DEBUG for details)",
            }
        }
        typer.echo(json.dumps(body), err=True)
        raise SystemExit(EXIT_FAILED) from None
