"""The webhook delivery log as operators read it, and redelivery of an event."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, Select, select, update

from genq.store.engine import reader
from genq.store.tables import (
    webhook_attempts,
    webhook_deliveries,
    webhook_endpoints,
    webhook_events,
)
from genq.store.webhook_deliveries import DeliveryStatus


@dataclass(frozen=True)
class DeliveryView:
    id: str
    event_id: str
    event_type: str
    job_id: str
    tenant: str
    endpoint_id: str | None
    url: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime

    def public(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class AttemptView:
    delivery_id: str
    at: datetime
    status_code: int | None
    latency_ms: float | None
    error: str | None
    response_excerpt: str | None

    def public(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


def _deliveries_query() -> Select[Any]:
    joined = webhook_deliveries.join(
        webhook_events, webhook_events.c.id == webhook_deliveries.c.event_id
    )
    d = webhook_deliveries.c
    return select(
        d.id,
        d.event_id,
        webhook_events.c.event_type,
        webhook_events.c.job_id,
        webhook_events.c.tenant,
        d.endpoint_id,
        d.url,
        d.status,
        d.attempts,
        d.next_attempt_at,
        d.last_status_code,
        d.last_error,
        d.created_at,
        d.updated_at,
    ).select_from(joined)


def _view(row: Row[Any]) -> DeliveryView:
    return DeliveryView(**dict(row._mapping))


def list_deliveries(
    engine: Engine,
    *,
    tenant: str | None = None,
    job_id: str | None = None,
    event_id: str | None = None,
    status: str | None = None,
    limit: int = 100,
) -> list[DeliveryView]:
    """Newest first. ``status="failed"``: attempted at least once and not delivered."""
    d = webhook_deliveries.c
    query = _deliveries_query().order_by(d.created_at.desc(), d.id.desc()).limit(limit)
    if tenant is not None:
        query = query.where(webhook_events.c.tenant == tenant)
    if job_id is not None:
        query = query.where(webhook_events.c.job_id == job_id)
    if event_id is not None:
        query = query.where(d.event_id == event_id)
    if status == "failed":
        query = query.where(d.status != DeliveryStatus.SUCCEEDED.value, d.attempts > 0)
    elif status is not None:
        query = query.where(d.status == status)
    with reader(engine).connect() as conn:
        return [_view(row) for row in conn.execute(query).all()]


def get_delivery(
    engine: Engine, delivery_id: str, tenant: str | None = None
) -> DeliveryView | None:
    query = _deliveries_query().where(webhook_deliveries.c.id == delivery_id)
    if tenant is not None:
        query = query.where(webhook_events.c.tenant == tenant)
    with reader(engine).connect() as conn:
        row = conn.execute(query).first()
    return _view(row) if row else None


def list_attempts(engine: Engine, delivery_id: str) -> list[AttemptView]:
    """Every attempt of one delivery, oldest first."""
    a = webhook_attempts.c
    query = (
        select(a.delivery_id, a.at, a.status_code, a.latency_ms, a.error, a.response_excerpt)
        .where(a.delivery_id == delivery_id)
        .order_by(a.id)
    )
    with reader(engine).connect() as conn:
        return [AttemptView(**dict(row._mapping)) for row in conn.execute(query).all()]


def redeliver_event(
    engine: Engine, event_id: str, now: datetime, tenant: str | None = None
) -> list[str] | None:
    """Send ``event_id`` again to each of its targets; returns the delivery ids now due.

    The same event id, so the same ``webhook-id``: receivers that already processed it can
    drop it. A target still pending is made due now; a finished one gets a fresh delivery.
    Endpoints removed or disabled since are skipped. None when the event does not exist.
    """
    query = select(webhook_events.c.id).where(webhook_events.c.id == event_id)
    if tenant is not None:
        query = query.where(webhook_events.c.tenant == tenant)
    due: list[str] = []
    with engine.begin() as conn:
        if conn.execute(query).first() is None:
            return None
        rows = conn.execute(
            select(webhook_deliveries)
            .where(webhook_deliveries.c.event_id == event_id)
            .order_by(webhook_deliveries.c.created_at.desc(), webhook_deliveries.c.id)
        ).all()
        seen: set[object] = set()
        for row in rows:
            m = row._mapping
            target = m["endpoint_id"] or ("url", m["url"])
            if target in seen:
                continue
            seen.add(target)
            if m["endpoint_id"] is not None:
                endpoint = conn.execute(
                    select(webhook_endpoints.c.disabled_at).where(
                        webhook_endpoints.c.id == m["endpoint_id"]
                    )
                ).first()
                if endpoint is None or endpoint[0] is not None:
                    continue
            if m["status"] == DeliveryStatus.PENDING.value:
                conn.execute(
                    update(webhook_deliveries)
                    .where(webhook_deliveries.c.id == m["id"])
                    .values(next_attempt_at=now, dispatched_at=None, updated_at=now)
                )
                due.append(m["id"])
                continue
            new_id = str(uuid.uuid4())
            conn.execute(
                webhook_deliveries.insert().values(
                    id=new_id,
                    event_id=event_id,
                    endpoint_id=m["endpoint_id"],
                    url=m["url"],
                    secrets=m["secrets"],
                    thin=m["thin"],
                    status=DeliveryStatus.PENDING.value,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                    updated_at=now,
                )
            )
            due.append(new_id)
    return due
