"""Hand due webhook deliveries to the ``genq.webhooks`` queue (delivery runs there).

Called by the worker right after a terminal transition (the first attempt goes out at once)
and by the periodic sweep (retries, whose time is kept in the store as ``next_attempt_at``,
never as a Celery ETA). Marking ``dispatched_at`` with a compare-and-set means the sweep does
not send a second message for a delivery whose message is still queued; should a message be
lost, the sweep sends another once ``WEBHOOK_DISPATCH_LEASE_SECONDS`` have passed. Duplicates
that slip through anyway are harmless: the delivery task claims before it sends.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from celery import Celery
from sqlalchemy import or_, select, update

from genq import constants as c
from genq.store import JobStore, utcnow
from genq.store.tables import webhook_deliveries, webhook_events

log = logging.getLogger(__name__)


def dispatch_pending_deliveries(
    app: Celery,
    store: JobStore,
    *,
    job_id: str | None = None,
    event_id: str | None = None,
    now: datetime | None = None,
) -> int:
    """Send a delivery task for each due, undispatched pending delivery; returns how many."""
    now = now or utcnow()
    d = webhook_deliveries.c
    lease_cutoff = now - timedelta(seconds=c.WEBHOOK_DISPATCH_LEASE_SECONDS)
    due = [
        d.status == "pending",
        d.next_attempt_at <= now,
        or_(d.dispatched_at.is_(None), d.dispatched_at < lease_cutoff),
    ]
    candidates = select(d.id).where(*due).limit(c.WEBHOOK_DISPATCH_BATCH)
    if job_id is not None or event_id is not None:
        candidates = candidates.join(webhook_events, webhook_events.c.id == d.event_id)
    if job_id is not None:
        candidates = candidates.where(webhook_events.c.job_id == job_id)
    if event_id is not None:
        candidates = candidates.where(d.event_id == event_id)
    claim = (
        update(webhook_deliveries)
        .where(d.id.in_(candidates.scalar_subquery()), *due)
        .values(dispatched_at=now)
        .returning(d.id)
    )
    with store.engine.begin() as conn:
        ids = [row[0] for row in conn.execute(claim).all()]
    sent = 0
    for delivery_id in ids:
        try:
            app.send_task(
                c.TASK_DELIVER_WEBHOOK,
                kwargs={"delivery_id": delivery_id},
                queue=c.WEBHOOK_QUEUE,
                routing_key=c.WEBHOOK_QUEUE,
            )
        except Exception:  # kombu/redis raise many types; the sweep re-sends after the lease
            log.warning("could not hand webhook delivery %s to the broker", delivery_id)
            continue
        sent += 1
    return sent
