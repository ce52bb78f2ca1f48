"""The worker side's Celery app: genq's app (:mod:`genq.celery_app`) with the hardened
transport, the dead-lettering consumer and genq's tasks."""

from __future__ import annotations

from celery import Celery

from genq.celery_app import create_app
from genq.settings import Settings
from tasks import generate, webhooks
from workers.internals import DeadLetteringConsumer, Transport

__all__ = ["create_worker_app"]


def create_worker_app(settings: Settings) -> Celery:
    """The app a worker (and beat) runs: it consumes, so it gets genq's transport, consumer
    and task modules."""
    return create_app(
        settings,
        transport=Transport,
        consumer=DeadLetteringConsumer,
        task_modules=(generate, webhooks),
    )
