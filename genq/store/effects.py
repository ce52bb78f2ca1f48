"""Side effects of a terminal transition, written in the same transaction (outbox pattern)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select

from genq.store.tables import reply_outbox, webhook_deliveries, webhook_endpoints, webhook_events
from schemas import JobRecord, JobStatus

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


def record_terminal_effects(
    conn: Connection,
    record: JobRecord,
    *,
    reply_to: str | None,
    webhook_url: str | None,
    webhook_secret: str | None,
    default_secret: str | None,
    now: datetime,
) -> int:
    """Queue the reply message and the webhook event of a job that just reached ``record.status``.

    One event per transition (its id is the stable ``webhook-id``) and one pending delivery per
    target. Secrets are resolved when each attempt is sent: a registered endpoint's current
    secrets, else the job's own, else the deployment default (``default_secret`` is not
    copied into the row, so rotating it also covers retries already queued).
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
    event_type = WEBHOOK_EVENT_TYPES.get(record.status)
    if event_type is None:
        return 0
    targets = _webhook_targets(conn, record.tenant, event_type, webhook_url, webhook_secret)
    if not targets:
        return 0
    event_id = f"msg_{uuid.uuid4().hex}"
    conn.execute(
        webhook_events.insert().values(
            id=event_id,
            job_id=record.id,
            tenant=record.tenant,
            event_type=event_type,
            payload={
                "type": event_type,
                "timestamp": now.isoformat(),
                "data": record.model_dump(mode="json"),
            },
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
    return len(targets)


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
