"""``/v1/admin/webhooks``: endpoints, the delivery log and redelivery, for admin keys only.

The same operations as ``genq webhooks`` (``producers.webhook_admin``); the store and the SSRF
check are sync, so each runs in a worker thread.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from genq import constants as c
from producers import webhook_admin as admin
from producers.gateway.auth import require_admin
from producers.gateway.errors import error_responses
from producers.gateway.state import gateway_of
from schemas.jobs import Number

router = APIRouter(
    prefix="/v1/admin/webhooks",
    tags=["webhooks"],
    dependencies=[Depends(require_admin)],
    responses=error_responses(401, 403),
)
EndpointId = Annotated[str, Path(max_length=64, description="The endpoint's id.")]


class EndpointIn(BaseModel):
    """A receiver to register. Without ``secret`` genq generates one (returned once)."""

    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(min_length=1, max_length=64)
    url: str = Field(min_length=1, max_length=2048)
    events: list[str] | None = Field(default=None, description="default: every event type")
    secret: str | None = Field(default=None, description="whsec_…")
    thin: bool = Field(default=False, description="send only the job's id and status")


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_seconds: Number = Field(default=c.WEBHOOK_ROTATION_OVERLAP_SECONDS, ge=0)
    secret: str | None = None


@router.get("/endpoints")
async def list_endpoints(
    request: Request, tenant: Annotated[str | None, Query(max_length=64)] = None
) -> dict[str, Any]:
    from genq.store.webhook_endpoints import list_endpoints as listed

    store = gateway_of(request).store
    found = await run_in_threadpool(listed, store.engine, tenant)
    return {"data": [e.public() for e in found]}


@router.post("/endpoints", status_code=201, responses=error_responses(400))
async def add_endpoint(request: Request, body: EndpointIn) -> dict[str, Any]:
    """Register an endpoint; the response holds its secret, shown this once."""
    gateway = gateway_of(request)
    created = await run_in_threadpool(
        lambda: admin.add_endpoint(
            gateway.store,
            gateway.settings,
            tenant=body.tenant,
            url=body.url,
            events=body.events,
            secret=body.secret,
            thin=body.thin,
        )
    )
    return {**created.endpoint.public(), "secret": created.secret}


@router.delete("/endpoints/{endpoint_id}", responses=error_responses(404))
async def remove_endpoint(request: Request, endpoint_id: EndpointId) -> dict[str, Any]:
    await run_in_threadpool(admin.remove_endpoint, gateway_of(request).store, endpoint_id)
    return {"id": endpoint_id, "removed": True}


@router.post("/endpoints/{endpoint_id}/enable", responses=error_responses(404))
async def enable_endpoint(request: Request, endpoint_id: EndpointId) -> dict[str, Any]:
    endpoint = await run_in_threadpool(
        admin.enable_endpoint, gateway_of(request).store, endpoint_id
    )
    return endpoint.public()


@router.post("/endpoints/{endpoint_id}/rotate-secret", responses=error_responses(400, 404))
async def rotate_secret(
    request: Request, endpoint_id: EndpointId, body: RotateIn | None = None
) -> dict[str, Any]:
    """A new secret (shown this once); the old ones keep signing for ``overlap_seconds``."""
    options = body or RotateIn()
    store = gateway_of(request).store
    rotated = await run_in_threadpool(
        lambda: admin.rotate_secret(
            store, endpoint_id, overlap_seconds=options.overlap_seconds, secret=options.secret
        )
    )
    return {**rotated.endpoint.public(), "secret": rotated.secret}


@router.get("/deliveries", responses=error_responses(400))
async def list_deliveries(
    request: Request,
    job_id: Annotated[str | None, Query(max_length=64)] = None,
    event_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[
        str | None, Query(description="pending|succeeded|failed|exhausted|disabled")
    ] = None,
    tenant: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The delivery log, newest first."""
    store = gateway_of(request).store
    found = await run_in_threadpool(
        lambda: admin.deliveries(
            store, job_id=job_id, event_id=event_id, status=status, tenant=tenant, limit=limit
        )
    )
    return {"data": [d.public() for d in found]}


@router.get("/deliveries/{delivery_id}", responses=error_responses(404))
async def get_delivery(
    request: Request, delivery_id: Annotated[str, Path(max_length=64)]
) -> dict[str, Any]:
    """One delivery with every attempt (time, status, latency, error, response excerpt)."""
    store = gateway_of(request).store
    delivery, attempts = await run_in_threadpool(admin.delivery_attempts, store, delivery_id)
    return {**delivery.public(), "attempts": [a.public() for a in attempts]}


@router.post("/events/{event_id}/redeliver", status_code=202, responses=error_responses(404))
async def redeliver(
    request: Request, event_id: Annotated[str, Path(max_length=64)]
) -> dict[str, Any]:
    """Send an event again, with the same ``webhook-id``."""
    gateway = gateway_of(request)
    due = await run_in_threadpool(admin.redeliver, gateway.celery, gateway.store, event_id)
    return {"event_id": event_id, "deliveries": due}
