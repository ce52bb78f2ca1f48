"""The webhook delivery task, on its own queue (``genq.webhooks``) so a slow receiver never
holds an LLM slot. Thin: the attempt, its claim and its schedule live in ``workers.webhooks``."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from genq import constants as c
from workers.context import context_for
from workers.webhooks.delivery import deliver


@shared_task(name=c.TASK_DELIVER_WEBHOOK, bind=True, acks_late=True, ignore_result=True)
def deliver_webhook(self: Task, delivery_id: Any = None, **unexpected: Any) -> str:
    """Make the next attempt of one delivery, if it is due and nobody else is making it."""
    if not isinstance(delivery_id, str):
        return "undecodable"
    ctx = context_for(self.app)
    return deliver(ctx.store.engine, ctx.settings, delivery_id)
