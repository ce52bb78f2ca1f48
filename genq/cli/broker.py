"""``genq broker``: what an operator does to the broker itself (RabbitMQ's queue upgrades)."""

from __future__ import annotations

import json

import typer

from genq.cli.failure import fail
from genq.settings import Settings
from schemas import BrokerUnavailable, InvalidRequest

broker_app = typer.Typer(no_args_is_help=True, help="The broker: RabbitMQ queue upgrades.")


@broker_app.command("upgrade")
def upgrade_cmd() -> None:
    """Redeclare each genq queue RabbitMQ holds with other arguments (it answers 406 to genq's
    declaration: an older genq, or a switch to or from quorum queues), keeping its messages.
    Prints one JSON line per queue upgraded; nothing for queues already as genq declares them."""
    from genq import rabbitmq  # kombu and Celery: only for this command
    from genq.celery_app import create_app

    settings = Settings()
    if not settings.broker_is_amqp:
        fail(InvalidRequest("the broker is Redis (no GENQ_BROKER_URL=amqp://…): nothing to do"))
    app = create_app(settings)
    try:
        with app.connection_for_write() as connection:
            upgraded = rabbitmq.upgrade_queues(connection, app.conf.task_queues)
            rabbitmq.declare_topology(connection, app.conf.task_queues)
    except OSError as exc:
        fail(BrokerUnavailable(f"cannot reach RabbitMQ ({exc.__class__.__name__}: {exc})"))
    finally:
        app.close()
    for done in upgraded:
        typer.echo(json.dumps({"queue": done.queue, "moved": done.moved}))
