"""Operator actions on webhooks, shared by ``genq webhooks`` and the admin HTTP API.

Input is validated here (URL through the SSRF guard, secrets, event names) so both front ends
refuse the same things with the same error codes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from celery import Celery

from genq import constants as c
from genq.outbox import dispatch_webhooks
from genq.settings import Settings
from genq.store import JobStore, utcnow, webhook_log
from genq.store import webhook_endpoints as endpoints
from genq.store.batches import BATCH_EVENT_TYPES
from genq.store.outbox import WEBHOOK_EVENT_TYPES
from genq.store.webhook_deliveries import STATUS_FILTERS
from genq.webhooks.signing import generate_secret, is_valid_secret, rotate
from genq.webhooks.ssrf import check_webhook_url
from schemas import InvalidRequest, NotFound
from schemas.responses import RESPONSE_EVENT_TYPES

__all__ = [
    "EVENT_TYPES",
    "NewSecret",
    "add_endpoint",
    "deliveries",
    "delivery_attempts",
    "enable_endpoint",
    "parse_events",
    "redeliver",
    "remove_endpoint",
    "rotate_secret",
]

EVENT_TYPES = (
    *WEBHOOK_EVENT_TYPES.values(),
    *BATCH_EVENT_TYPES.values(),
    *RESPONSE_EVENT_TYPES.values(),
)
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class NewSecret:
    """A secret to show its owner once."""

    endpoint: endpoints.Endpoint
    secret: str

    def __repr__(self) -> str:
        return f"NewSecret(endpoint={self.endpoint.id!r}, secret='whsec_…')"


def parse_events(events: Iterable[str] | str | None) -> list[str]:
    """Event names from a list or comma-separated text; empty means every event."""
    if events is None:
        return []
    items = events.split(",") if isinstance(events, str) else list(events)
    names = sorted({item.strip() for item in items if item.strip()})
    unknown = [name for name in names if name not in EVENT_TYPES]
    if unknown:
        raise InvalidRequest(
            f"unknown webhook event(s) {', '.join(unknown)}; use {', '.join(EVENT_TYPES)}",
            details=[{"field": "events", "message": f"must be among {list(EVENT_TYPES)}"}],
        )
    return [] if set(names) == set(EVENT_TYPES) else names


def _secret_or_new(secret: str | None) -> str:
    if secret is None:
        return generate_secret()
    if not is_valid_secret(secret):
        raise InvalidRequest(
            "a webhook secret is 'whsec_' followed by base64 of at least 16 random bytes; "
            "leave it out and genq generates one",
            details=[{"field": "secret", "message": "not a whsec_ secret"}],
        )
    return secret


def add_endpoint(
    store: JobStore,
    settings: Settings,
    *,
    tenant: str,
    url: str,
    events: Iterable[str] | str | None = None,
    secret: str | None = None,
    thin: bool = False,
) -> NewSecret:
    """Register a receiver for ``tenant``; the returned secret is shown to the caller once."""
    if not TENANT_PATTERN.match(tenant):
        raise InvalidRequest(
            f"tenant {tenant!r} must be 1-64 letters, digits, '_', '.' or '-'",
            details=[{"field": "tenant", "message": "invalid tenant name"}],
        )
    check_webhook_url(url, settings.webhook_allow)
    chosen = _secret_or_new(secret)
    endpoint = endpoints.add_endpoint(
        store.engine,
        tenant=tenant,
        url=url,
        secret=chosen,
        events=parse_events(events),
        thin=thin,
        now=utcnow(),
    )
    return NewSecret(endpoint, chosen)


def _endpoint(store: JobStore, endpoint_id: str, tenant: str | None) -> endpoints.Endpoint:
    endpoint = endpoints.get_endpoint(store.engine, endpoint_id, tenant)
    if endpoint is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint


def remove_endpoint(store: JobStore, endpoint_id: str, tenant: str | None = None) -> None:
    _endpoint(store, endpoint_id, tenant)
    endpoints.remove_endpoint(store.engine, endpoint_id, utcnow())


def enable_endpoint(
    store: JobStore, endpoint_id: str, tenant: str | None = None
) -> endpoints.Endpoint:
    """Re-enable an endpoint disabled by a 410 (past deliveries stay as they are)."""
    _endpoint(store, endpoint_id, tenant)
    endpoints.enable_endpoint(store.engine, endpoint_id)
    return _endpoint(store, endpoint_id, tenant)


def rotate_secret(
    store: JobStore,
    endpoint_id: str,
    *,
    overlap_seconds: float = c.WEBHOOK_ROTATION_OVERLAP_SECONDS,
    secret: str | None = None,
    tenant: str | None = None,
) -> NewSecret:
    """Give the endpoint a new secret; the old ones keep signing for ``overlap_seconds``."""
    if overlap_seconds < 0:
        raise InvalidRequest("overlap_seconds must be 0 or more")
    endpoint = _endpoint(store, endpoint_id, tenant)
    chosen = _secret_or_new(secret)
    entries = rotate(endpoint.secrets, chosen, utcnow(), overlap_seconds)
    endpoints.set_secrets(store.engine, endpoint_id, entries)
    return NewSecret(_endpoint(store, endpoint_id, tenant), chosen)


def deliveries(
    store: JobStore,
    *,
    job_id: str | None = None,
    event_id: str | None = None,
    status: str | None = None,
    tenant: str | None = None,
    limit: int = 100,
) -> list[webhook_log.DeliveryView]:
    if status is not None and status not in STATUS_FILTERS:
        raise InvalidRequest(
            f"unknown delivery status {status!r}; use one of {', '.join(STATUS_FILTERS)}",
            details=[{"field": "status", "message": f"must be one of {list(STATUS_FILTERS)}"}],
        )
    return webhook_log.list_deliveries(
        store.engine, tenant=tenant, job_id=job_id, event_id=event_id, status=status, limit=limit
    )


def delivery_attempts(
    store: JobStore, delivery_id: str, tenant: str | None = None
) -> tuple[webhook_log.DeliveryView, list[webhook_log.AttemptView]]:
    """A delivery and every attempt it made (time, status, latency, error, excerpt)."""
    delivery = webhook_log.get_delivery(store.engine, delivery_id, tenant)
    if delivery is None:
        raise NotFound(f"no webhook delivery {delivery_id}")
    return delivery, webhook_log.list_attempts(store.engine, delivery_id)


def redeliver(app: Celery, store: JobStore, event_id: str, tenant: str | None = None) -> list[str]:
    """Send an event again (same ``webhook-id``) and hand it to the delivery queue now."""
    due = webhook_log.redeliver_event(store.engine, event_id, utcnow(), tenant)
    if due is None:
        raise NotFound(f"no webhook event {event_id}")
    if due:
        dispatch_webhooks(app, store, event_id=event_id)
    return due
