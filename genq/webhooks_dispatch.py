"""Hand due webhook deliveries to the ``genq.webhooks`` queue (delivery runs there)."""

from __future__ import annotations

from datetime import datetime

from celery import Celery
from sqlalchemy import select

from genq import constants as c
from genq.store import JobStore, utcnow
from genq.store.tables import webhook_deliveries, webhook_events


def dispatch_pending_deliveries(
    app: Celery, store: JobStore, *, job_id: str | None = None, now: datetime | None = None
) -> int:
    """Send a delivery task for each pending delivery that is due; returns how many."""
    now = now or utcnow()
    query = (
        select(webhook_deliveries.c.id)
        .where(
            webhook_deliveries.c.status == "pending", webhook_deliveries.c.next_attempt_at <= now
        )
        .limit(500)
    )
    if job_id is not None:
        query = query.join(
            webhook_events, webhook_events.c.id == webhook_deliveries.c.event_id
        ).where(webhook_events.c.job_id == job_id)
    with store.engine.connect() as conn:
        ids = [row[0] for row in conn.execute(query).all()]
    for delivery_id in ids:
        app.send_task(
            c.TASK_DELIVER_WEBHOOK,
            kwargs={"delivery_id": delivery_id},
            queue=c.WEBHOOK_QUEUE,
            routing_key=c.WEBHOOK_QUEUE,
        )
    return len(ids)
