"""The baseline: a plain Celery app with a no-op task, configured like genq's (acks late,
prefetch 1, JSON), used by the overhead benchmarks. Broker URL from BENCH_REDIS_URL (or an
AMQP one: RabbitMQ, with publisher confirms as genq publishes), result backend from
BENCH_BACKEND_URL (default: the broker's URL)."""

from __future__ import annotations

import os

from celery import Celery


def noop() -> None:
    """The task: nothing at all."""


def make_app() -> Celery:
    url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    backend = os.environ.get("BENCH_BACKEND_URL", url)
    amqp = url.startswith("amqp")
    app = Celery("raw", broker=url, backend=backend, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        worker_disable_prefetch=not amqp,  # Celery applies it to Redis only
        worker_hijack_root_logger=False,
        broker_transport_options={"confirm_publish": True} if amqp else {},
    )

    app.task(name="raw.noop")(noop)
    return app


app = make_app() if os.environ.get("BENCH_REDIS_URL") else None
