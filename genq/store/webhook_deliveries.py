"""Webhook deliveries: the claim before an attempt, the attempt log, the operator's views.

A delivery is sent only by the task that wins its claim: a compare-and-set that moves a due
``pending`` delivery's ``next_attempt_at`` into the future (the in-flight lease) and counts the
attempt. A duplicate task message, or a sweep racing the worker's own dispatch, loses the claim
and sends nothing; a worker that dies mid-attempt leaves the lease to lapse and the sweep
dispatches the delivery again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, and_, select, update

from genq.store.tables import (
    webhook_attempts,
    webhook_deliveries,
    webhook_endpoints,
    webhook_events,
)


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its next attempt (or in flight)
    SUCCEEDED = "succeeded"
    EXHAUSTED = "exhausted"  # every attempt of the schedule failed
    DISABLED = "disabled"  # its endpoint answered 410, was disabled or removed


# Filter values the CLI and admin API accept; "failed" = at least one attempt, not delivered.
STATUS_FILTERS = ("pending", "succeeded", "exhausted", "disabled", "failed")


@dataclass(frozen=True)
class Claim:
    """One attempt this process won the right to make."""

    delivery_id: str
    event_id: str
    event_type: str
    endpoint_id: str | None
    url: str
    thin: bool
    attempt: int
    payload: dict[str, Any] = field(repr=False)
    secrets: list[dict[str, Any]] = field(repr=False)


@dataclass(frozen=True)
class AttemptLog:
    """What one attempt did, as written to ``webhook_attempts``."""

    at: datetime
    status_code: int | None
    latency_ms: float
    error: str | None = None
    response_excerpt: str | None = None


def claim_delivery(
    engine: Engine, delivery_id: str, now: datetime, lease_seconds: float
) -> Claim | None:
    """Claim a due pending delivery for one attempt; None when it is not this caller's to send."""
    joined = webhook_deliveries.join(
        webhook_events, webhook_events.c.id == webhook_deliveries.c.event_id
    )
    query = select(
        webhook_deliveries, webhook_events.c.event_type, webhook_events.c.payload
    ).select_from(joined)
    with engine.begin() as conn:
        row = conn.execute(query.where(webhook_deliveries.c.id == delivery_id)).first()
        if row is None or row._mapping["status"] != DeliveryStatus.PENDING:
            return None
        m = row._mapping
        secrets = list(m["secrets"] or [])
        url, thin = m["url"], bool(m["thin"])
        if m["endpoint_id"] is not None:
            endpoint = conn.execute(
                select(webhook_endpoints).where(webhook_endpoints.c.id == m["endpoint_id"])
            ).first()
            if endpoint is None or endpoint._mapping["disabled_at"] is not None:
                reason = "endpoint removed" if endpoint is None else "endpoint disabled"
                _stop(conn, [webhook_deliveries.c.id == delivery_id], reason, now)
                return None
            # The endpoint's current secrets: a rotation applies to retries already queued.
            secrets = list(endpoint._mapping["secrets"] or [])
            url, thin = endpoint._mapping["url"], bool(endpoint._mapping["thin"])
        attempt = conn.execute(
            update(webhook_deliveries)
            .where(
                webhook_deliveries.c.id == delivery_id,
                webhook_deliveries.c.status == DeliveryStatus.PENDING.value,
                webhook_deliveries.c.next_attempt_at <= now,
            )
            .values(
                attempts=webhook_deliveries.c.attempts + 1,
                # In flight: no dispatch before the lease lapses, then at once (a crash here).
                next_attempt_at=now + timedelta(seconds=lease_seconds),
                dispatched_at=None,
                updated_at=now,
            )
            .returning(webhook_deliveries.c.attempts)
        ).first()
    if attempt is None:
        return None
    return Claim(
        delivery_id=delivery_id,
        event_id=m["event_id"],
        event_type=m["event_type"],
        endpoint_id=m["endpoint_id"],
        url=url,
        thin=thin,
        attempt=int(attempt[0]),
        payload=dict(m["payload"]),
        secrets=secrets,
    )


def finish_attempt(
    engine: Engine,
    claim: Claim,
    log: AttemptLog,
    *,
    status: DeliveryStatus,
    next_attempt_at: datetime | None,
    disable_reason: str | None = None,
) -> bool:
    """Log the attempt and settle the delivery; False if the claim had lapsed meanwhile."""
    with engine.begin() as conn:
        conn.execute(
            webhook_attempts.insert().values(
                delivery_id=claim.delivery_id,
                at=log.at,
                status_code=log.status_code,
                latency_ms=round(log.latency_ms, 3),
                error=log.error,
                response_excerpt=log.response_excerpt,
            )
        )
        result = conn.execute(
            update(webhook_deliveries)
            .where(
                webhook_deliveries.c.id == claim.delivery_id,
                webhook_deliveries.c.status == DeliveryStatus.PENDING.value,
                webhook_deliveries.c.attempts == claim.attempt,
            )
            .values(
                status=status.value,
                next_attempt_at=next_attempt_at,
                dispatched_at=None,
                last_status_code=log.status_code,
                last_error=log.error,
                updated_at=log.at,
            )
        )
        if result.rowcount == 1 and disable_reason and claim.endpoint_id:
            disable_endpoint(conn, claim.endpoint_id, disable_reason, log.at)
    return result.rowcount == 1


def disable_endpoint(conn: Connection, endpoint_id: str, reason: str, now: datetime) -> None:
    """Disable an endpoint and stop its pending deliveries, in the caller's transaction."""
    conn.execute(
        update(webhook_endpoints)
        .where(webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.disabled_at.is_(None))
        .values(disabled_at=now, disabled_reason=reason)
    )
    stop_pending(conn, endpoint_id, f"endpoint disabled: {reason}", now)


def stop_pending(conn: Connection, endpoint_id: str, reason: str, now: datetime) -> None:
    """Mark an endpoint's pending deliveries ``disabled`` (they stay in the log)."""
    _stop(conn, [webhook_deliveries.c.endpoint_id == endpoint_id], reason, now)


def _stop(conn: Connection, where: list[Any], reason: str, now: datetime) -> None:
    conn.execute(
        update(webhook_deliveries)
        .where(and_(*where), webhook_deliveries.c.status == DeliveryStatus.PENDING.value)
        .values(
            status=DeliveryStatus.DISABLED.value,
            next_attempt_at=None,
            dispatched_at=None,
            last_error=reason,
            updated_at=now,
        )
    )
