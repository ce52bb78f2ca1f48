"""The Celery app factory: every broker and worker setting genq relies on, in one place."""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from genq import constants as c
from genq.settings import Settings
from schemas.priority import PRIORITY_MAX, PRIORITY_STEPS

TASK_MODULES = ["tasks.generate", "tasks.webhooks"]


def _queue(name: str) -> Queue:
    # x-max-priority makes the same declaration work natively on RabbitMQ later.
    return Queue(
        name,
        Exchange(name, type="direct"),
        routing_key=name,
        durable=True,
        queue_arguments={"x-max-priority": PRIORITY_MAX + 1},
    )


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery configuration genq runs with (see DESIGN.md, Priority and Recovery)."""
    lane_queues = [_queue(settings.queue_for(lane)) for lane in settings.lanes]
    return {
        "broker_url": settings.redis_url,
        # kombu's Redis transport, minus the crash on an undecodable item (see transport.py).
        "broker_transport": "workers.transport:Transport",
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "priority_steps": PRIORITY_STEPS,
            "sep": ":",
            "queue_order_strategy": "priority",
            "visibility_timeout": settings.visibility_timeout_seconds,
            # kombu sets none: an unreachable host would hold a publish for minutes.
            "socket_connect_timeout": c.REDIS_CONNECT_TIMEOUT_SECONDS,
        },
        "broker_pool_limit": 10,
        "task_queues": [*lane_queues, _queue(c.WEBHOOK_QUEUE), _queue(c.MAINTENANCE_QUEUE)],
        "task_default_queue": settings.queue_for(settings.default_lane),
        "task_default_priority": PRIORITY_MAX - 5,
        "task_queue_max_priority": PRIORITY_MAX + 1,
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
        # What cannot be decoded or has no task goes to genq.dead_letter, not the floor.
        "worker_consumer": "workers.consumer:DeadLetteringConsumer",
        # SIGTERM: stop taking work, let running jobs finish for the grace period, then the
        # cold shutdown interrupts them and they are handed back (see tasks.execution).
        "worker_soft_shutdown_timeout": settings.shutdown_grace_seconds,
        # No beat_schedule: `genq beat` runs the sweep itself (workers/beat.py), so Flower's
        # task list holds jobs and webhook deliveries, not a sweep row every few seconds.
    }


def create_app(settings: Settings) -> Celery:
    """A Celery app bound to ``settings``; tasks load only when a worker starts."""
    app = Celery("genq", set_as_current=False, include=TASK_MODULES)
    app.conf.update(celery_config(settings))
    app.genq_settings = settings
    return app
