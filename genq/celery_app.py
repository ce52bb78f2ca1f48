"""The Celery app factory: every broker and worker setting genq relies on, in one place.

Both sides build their app here, so they publish and consume under one contract (queues,
priority steps, serializers, acks), over genq's Redis transport (``genq.internals``). The
worker side adds what only a consumer needs: its transport and consumer
(``workers.internals``) and its task modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from genq import constants as c
from genq import rabbitmq
from genq.internals import transport_for
from genq.settings import Settings
from schemas.priority import PRIORITY_MAX, PRIORITY_STEPS


def _queue(name: str, settings: Settings) -> Queue:
    if settings.broker_is_amqp:
        return rabbitmq.task_queue(name, settings)
    return Queue(
        name,
        Exchange(name, type="direct"),
        routing_key=name,
        durable=True,
        queue_arguments={"x-max-priority": PRIORITY_MAX + 1},
    )


def class_path(cls: type) -> str:
    """``module:Qualname``, the form kombu and Celery resolve a class from."""
    return f"{cls.__module__}:{cls.__qualname__}"


def celery_config(
    settings: Settings, *, transport: type | None = None, consumer: type | None = None
) -> dict[str, Any]:
    """The Celery configuration genq runs with (see DESIGN.md, Priority and Recovery).

    ``transport`` replaces kombu's Redis transport and ``consumer`` Celery's consumer; None
    keeps the stock ones (the URL's scheme picks the transport).
    """
    extra: dict[str, Any] = {}
    if consumer is not None:
        extra["worker_consumer"] = consumer
    names = [*(settings.queue_for(lane) for lane in settings.lanes), c.WEBHOOK_QUEUE]
    return {
        "broker_url": settings.effective_broker_url,
        # By its import path, not the class: kombu resolves either, and reports this value in
        # the worker's ``stats`` reply, which must encode as JSON (Flower asks for it; a class
        # there failed the reply with an EncodeError in the worker's log).
        "broker_transport": class_path(transport) if transport is not None else None,
        "broker_connection_retry_on_startup": True,
        "broker_pool_limit": 10,
        "task_queues": [_queue(name, settings) for name in [*names, c.MAINTENANCE_QUEUE]],
        "task_default_queue": settings.queue_for(settings.default_lane),
        "task_routes": {c.TASK_DELIVER_WEBHOOK: {"queue": c.WEBHOOK_QUEUE}},
        # JSON only on the wire: no pickle anywhere.
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # The store is the result backend of record; Celery keeps none.
        "task_ignore_result": True,
        "result_backend": None,
        # Work waits in the broker, where priority can still reorder it.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_disable_prefetch": True,
        "worker_max_tasks_per_child": None,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        # Flower needs task events.
        "worker_send_task_events": True,
        # No "task-sent" events: each costs the producer a second broker publish per job, and
        # Flower shows a job from "received" on; the store is the record of queued jobs.
        "task_send_sent_event": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # SIGTERM: stop taking work, let running jobs finish for the grace period, then the
        # cold shutdown interrupts them and they are handed back (see tasks.execution).
        "worker_soft_shutdown_timeout": settings.shutdown_grace_seconds,
        # No beat_schedule: `genq beat` runs the sweep itself (workers/beat.py), so Flower's
        # task list holds jobs and webhook deliveries, not a sweep row every few seconds.
        # Last: what differs between Redis and RabbitMQ overrides the above.
        **(_amqp_options(settings) if settings.broker_is_amqp else _redis_options(settings)),
        **extra,
    }


def _redis_options(settings: Settings) -> dict[str, Any]:
    return {
        "broker_transport_options": {
            "priority_steps": PRIORITY_STEPS,
            "sep": ":",
            "queue_order_strategy": "priority",
            "visibility_timeout": settings.visibility_timeout_seconds,
            # kombu sets none: an unreachable host would hold a publish for minutes.
            "socket_connect_timeout": c.REDIS_CONNECT_TIMEOUT_SECONDS,
        },
        # Redis's Celery priority is inverted (0 first): genq's 5 is step 4.
        "task_default_priority": PRIORITY_MAX - 5,
        "task_queue_max_priority": PRIORITY_MAX + 1,
    }


def _amqp_options(settings: Settings) -> dict[str, Any]:
    """RabbitMQ (docs/brokers.md): publisher confirms on every publish, AMQP priority = genq's
    (not inverted), classic priority queues or, with GENQ_RABBITMQ_QUORUM, quorum queues."""
    return {
        "broker_transport_options": {
            # Each publish waits for the broker's confirm: a message it could not take raises
            # at the producer instead of vanishing (celery#9149).
            "confirm_publish": True,
            "connect_timeout": c.REDIS_CONNECT_TIMEOUT_SECONDS,
        },
        "task_default_priority": PRIORITY_MAX - 4,
        "task_queue_max_priority": None if settings.rabbitmq_quorum else PRIORITY_MAX + 1,
        "task_default_queue_type": "quorum" if settings.rabbitmq_quorum else "classic",
        # A channel error (RabbitMQ's consumer_timeout closes the channel of a delivery
        # unacked for too long: celery#6760) reconnects the consumer instead of stopping the
        # worker; the redelivered message of a job still running is skipped (its lease is live).
        "broker_channel_error_retry": True,
        # Celery's prefetch-disabling applies to Redis only (it warns elsewhere); on RabbitMQ
        # prefetch = slots with late acks already keeps nothing waiting inside a busy worker.
        "worker_disable_prefetch": False,
    }


def create_app(
    settings: Settings,
    *,
    transport: type | None = None,
    consumer: type | None = None,
    task_modules: Sequence[ModuleType] = (),
) -> Celery:
    """A Celery app bound to ``settings``. A producer's app sends tasks by name and needs none
    of the keyword arguments; a worker's passes its transport, consumer and task modules.

    Without ``transport``, a Redis broker gets ``genq.internals.Transport`` (one client per
    connection pool instead of one per command); any other keeps kombu's own.
    """
    include = [module.__name__ for module in task_modules]
    app = Celery("genq", set_as_current=False, include=include)
    if transport is not None and settings.broker_is_amqp:
        transport = None  # a worker's Redis transport: kombu's AMQP one serves RabbitMQ
    chosen = transport if transport is not None else transport_for(settings.effective_broker_url)
    app.conf.update(celery_config(settings, transport=chosen, consumer=consumer))
    app.genq_settings = settings
    return app
