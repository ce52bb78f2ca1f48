"""Per-tenant webhook endpoints: registered URLs with their secrets and event filter."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, delete, select, update

from genq.store.engine import reader
from genq.store.tables import webhook_endpoints
from genq.store.webhook_deliveries import stop_pending


@dataclass(frozen=True)
class Endpoint:
    """A registered receiver. ``secrets`` (newest first) never shows in reprs or ``public()``."""

    id: str
    tenant: str
    url: str
    events: list[str]
    thin: bool
    created_at: datetime
    disabled_at: datetime | None = None
    disabled_reason: str | None = None
    secrets: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def public(self) -> dict[str, Any]:
        """JSON-safe view for the CLI and the admin API, without secret values."""
        return {
            "id": self.id,
            "tenant": self.tenant,
            "url": self.url,
            "events": self.events or ["*"],
            "thin": self.thin,
            "enabled": self.disabled_at is None,
            "disabled_at": self.disabled_at.isoformat() if self.disabled_at else None,
            "disabled_reason": self.disabled_reason,
            "secrets": [{"expires_at": s.get("expires_at")} for s in self.secrets],
            "created_at": self.created_at.isoformat(),
        }


def _endpoint(row: Row[Any]) -> Endpoint:
    m = row._mapping
    return Endpoint(
        id=m["id"],
        tenant=m["tenant"],
        url=m["url"],
        events=list(m["events"] or []),
        thin=bool(m["thin"]),
        created_at=m["created_at"],
        disabled_at=m["disabled_at"],
        disabled_reason=m["disabled_reason"],
        secrets=list(m["secrets"] or []),
    )


def add_endpoint(
    engine: Engine,
    *,
    tenant: str,
    url: str,
    secret: str,
    events: list[str],
    thin: bool,
    now: datetime,
) -> Endpoint:
    """Register an endpoint; ``events`` empty means every event type."""
    values = {
        "id": str(uuid.uuid4()),
        "tenant": tenant,
        "url": url,
        "secrets": [{"secret": secret, "expires_at": None}],
        "events": events,
        "thin": thin,
        "created_at": now,
    }
    with engine.begin() as conn:
        conn.execute(webhook_endpoints.insert().values(**values))
        row = conn.execute(
            select(webhook_endpoints).where(webhook_endpoints.c.id == values["id"])
        ).one()
    return _endpoint(row)


def get_endpoint(engine: Engine, endpoint_id: str, tenant: str | None = None) -> Endpoint | None:
    query = select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
    if tenant is not None:
        query = query.where(webhook_endpoints.c.tenant == tenant)
    with reader(engine).connect() as conn:
        row = conn.execute(query).first()
    return _endpoint(row) if row else None


def list_endpoints(engine: Engine, tenant: str | None = None) -> list[Endpoint]:
    query = select(webhook_endpoints).order_by(
        webhook_endpoints.c.created_at, webhook_endpoints.c.id
    )
    if tenant is not None:
        query = query.where(webhook_endpoints.c.tenant == tenant)
    with reader(engine).connect() as conn:
        return [_endpoint(row) for row in conn.execute(query).all()]


def remove_endpoint(engine: Engine, endpoint_id: str, now: datetime) -> bool:
    """Delete the endpoint; its pending deliveries stop (kept, as ``disabled``, for the log)."""
    with engine.begin() as conn:
        stop_pending(conn, endpoint_id, "endpoint removed", now)
        result = conn.execute(
            delete(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
        )
    return result.rowcount == 1


def set_secrets(engine: Engine, endpoint_id: str, secrets: list[dict[str, Any]]) -> bool:
    with engine.begin() as conn:
        result = conn.execute(
            update(webhook_endpoints)
            .where(webhook_endpoints.c.id == endpoint_id)
            .values(secrets=secrets)
        )
    return result.rowcount == 1


def enable_endpoint(engine: Engine, endpoint_id: str) -> bool:
    with engine.begin() as conn:
        result = conn.execute(
            update(webhook_endpoints)
            .where(webhook_endpoints.c.id == endpoint_id)
            .values(disabled_at=None, disabled_reason=None)
        )
    return result.rowcount == 1
