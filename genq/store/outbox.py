"""The outbox's SQL: rows a terminal transition writes in its own transaction, and the claims
that publish each of them once.

A terminal transition writes its reply (``reply_outbox``) and its webhook event with one pending
delivery per target (``webhook_events``, ``webhook_deliveries``); ``genq.outbox`` publishes them.
Publishing starts with a compare-and-set claim, so a row is handed to the broker by one
publisher at a time; a claim older than its lease belongs to a publisher that died, and the
sweep takes it over. A row reaches the broker at least once, then; what is emitted once is
decided there: a reply's publish is a no-op the second time (``genq.reply_publisher``), and a
webhook delivery is claimed again by the task that sends it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, or_, select, update

from genq.store.tables import reply_outbox, webhook_deliveries, webhook_endpoints, webhook_events
from schemas import JobRecord, JobStatus
from schemas.responses import response_event_type, response_id, response_status

WEBHOOK_EVENT_TYPES = {
    JobStatus.SUCCEEDED: "job.succeeded",
    JobStatus.FAILED: "job.failed",
    JobStatus.CANCELLED: "job.cancelled",
    JobStatus.EXPIRED: "job.expired",
    JobStatus.DEAD_LETTERED: "job.dead_lettered",
}

# Built once: every terminal transition runs it.
_ACTIVE_ENDPOINTS = select(webhook_endpoints).where(
    webhook_endpoints.c.tenant == bindparam("tenant"), webhook_endpoints.c.disabled_at.is_(None)
)


@dataclass(frozen=True)
class Deliveries:
    """What a terminal transition wrote to the outbox in its own transaction, for the caller
    that made the transition to publish (``genq.outbox``); nothing for any other transition."""

    reply: bool = False  # a ``reply_outbox`` row: the job named a reply queue
    webhooks: int = 0  # pending ``webhook_deliveries``, one per target

    def __bool__(self) -> bool:
        return self.reply or self.webhooks > 0


NO_DELIVERIES = Deliveries()


@dataclass(frozen=True)
class PendingReply:
    """A reply this caller claimed: publish it, then mark it published."""

    id: int
    job_id: str
    queue: str
    payload: dict[str, Any] = field(repr=False)


def write_outbox(
    conn: Connection,
    record: JobRecord,
    *,
    reply_to: str | None,
    webhook_url: str | None,
    webhook_secret: str | None,
    now: datetime,
) -> Deliveries:
    """Write the reply and the webhook event of a job that just reached ``record.status``, on
    the transition's own connection; returns what it wrote, for the caller to publish.

    One event per transition (its id is the stable ``webhook-id``) and one pending delivery per
    target. Secrets are resolved when each attempt is sent: a registered endpoint's current
    secrets, else the job's own, else the deployment default (which is never copied into a
    row, so rotating it also covers retries already queued).
    """
    if reply_to:
        conn.execute(
            reply_outbox.insert().values(
                job_id=record.id,
                queue=reply_to,
                payload=record.model_dump(mode="json"),
                created_at=now,
            )
        )
    reply = Deliveries(reply=bool(reply_to))
    event_type = WEBHOOK_EVENT_TYPES.get(record.status)
    if event_type is None:
        return reply
    written = write_event(
        conn,
        subject_id=record.id,
        tenant=record.tenant,
        event_type=event_type,
        data=lambda: record.model_dump(mode="json"),  # built only if a target takes it
        now=now,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
    )
    webhooks = written[1] if written else 0
    response_event = response_event_type(record)
    if response_event is not None:
        # A response's job also ends as a response (OpenAI's event and envelope), for the
        # tenant's endpoints: ``data`` names the response, as OpenAI's does.
        data = {"id": response_id(record.id), "status": response_status(record)}
        also = write_event(
            conn,
            subject_id=record.id,
            tenant=record.tenant,
            event_type=response_event,
            data=data,
            now=now,
            openai_envelope=True,
        )
        webhooks += also[1] if also else 0
    return Deliveries(reply=bool(reply_to), webhooks=webhooks)


def write_event(
    conn: Connection,
    *,
    subject_id: str,
    tenant: str,
    event_type: str,
    data: dict[str, Any] | Callable[[], dict[str, Any]],
    now: datetime,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    openai_envelope: bool = False,
) -> tuple[str, int] | None:
    """An event about ``subject_id`` (a job, or a batch) and one pending delivery per target
    that takes it (``tenant``'s endpoints, plus ``webhook_url`` if given), on the caller's
    connection; the event id (the stable ``webhook-id``) and how many deliveries, or None if
    no target takes it (nothing written; a callable ``data`` is then never called).
    ``openai_envelope`` adds OpenAI's event fields (``id`` = the event id, ``object:
    "event"``, ``created_at`` in Unix seconds), so the ``openai`` SDK's ``webhooks.unwrap``
    reads it as its own."""
    targets = _webhook_targets(conn, tenant, event_type, webhook_url, webhook_secret)
    if not targets:
        return None
    event_id = f"msg_{uuid.uuid4().hex}"
    body = data() if callable(data) else data
    payload: dict[str, Any] = {"type": event_type, "timestamp": now.isoformat(), "data": body}
    if openai_envelope:
        payload = {"id": event_id, "object": "event", "created_at": int(now.timestamp())} | (
            payload
        )
    conn.execute(
        webhook_events.insert().values(
            id=event_id,
            job_id=subject_id,
            tenant=tenant,
            event_type=event_type,
            payload=payload,
            created_at=now,
        )
    )
    conn.execute(
        webhook_deliveries.insert(),
        [
            {
                "id": str(uuid.uuid4()),
                "event_id": event_id,
                "endpoint_id": target["endpoint_id"],
                "url": target["url"],
                "secrets": target["secrets"],
                "thin": target["thin"],
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for target in targets
        ],
    )
    return event_id, len(targets)


def _webhook_targets(
    conn: Connection,
    tenant: str,
    event_type: str,
    webhook_url: str | None,
    webhook_secret: str | None,
) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []
    if webhook_url:
        secrets = [{"secret": webhook_secret, "expires_at": None}] if webhook_secret else []
        targets.append({"endpoint_id": None, "url": webhook_url, "secrets": secrets, "thin": False})
    rows = conn.execute(_ACTIVE_ENDPOINTS, {"tenant": tenant}).all()
    for row in rows:
        m = row._mapping
        if m["events"] and event_type not in m["events"]:
            continue
        # Secrets stay on the endpoint (read at send time), so no copy is made here.
        targets.append({"endpoint_id": m["id"], "url": m["url"], "secrets": [], "thin": m["thin"]})
    return targets


def claim_replies(
    engine: Engine,
    now: datetime,
    *,
    claim_seconds: float,
    job_id: str | None = None,
    limit: int = 100,
) -> list[PendingReply]:
    """Claim unpublished replies (all, or one job's), oldest first: a compare-and-set on
    ``claimed_at``, which a claim older than ``claim_seconds`` (a dead publisher's) loses."""
    r = reply_outbox.c
    claimable = [
        r.published_at.is_(None),
        or_(r.claimed_at.is_(None), r.claimed_at < now - timedelta(seconds=claim_seconds)),
    ]
    candidates = select(r.id).where(*claimable).order_by(r.id).limit(limit)
    if job_id is not None:
        candidates = candidates.where(r.job_id == job_id)
    claim = (
        update(reply_outbox)
        .where(r.id.in_(candidates.scalar_subquery()), *claimable)
        .values(claimed_at=now)
        .returning(r.id, r.job_id, r.queue, r.payload)
    )
    with engine.begin() as conn:
        rows = conn.execute(claim).all()
    return sorted((PendingReply(*row) for row in rows), key=lambda reply: reply.id)


def mark_reply_published(engine: Engine, reply_id: int, now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(reply_outbox).where(reply_outbox.c.id == reply_id).values(published_at=now)
        )


def claim_due_deliveries(
    engine: Engine,
    now: datetime,
    *,
    lease_seconds: float,
    job_id: str | None = None,
    event_id: str | None = None,
    limit: int = 100,
) -> list[str]:
    """Claim due pending webhook deliveries for dispatch (all, one job's or one event's): a
    compare-and-set on ``dispatched_at``, which one older than ``lease_seconds`` loses (its
    message was lost). Returns the claimed delivery ids."""
    d = webhook_deliveries.c
    due = [
        d.status == "pending",
        d.next_attempt_at <= now,
        or_(d.dispatched_at.is_(None), d.dispatched_at < now - timedelta(seconds=lease_seconds)),
    ]
    candidates = select(d.id).where(*due).limit(limit)
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
    with engine.begin() as conn:
        return [row[0] for row in conn.execute(claim).all()]
