"""``/metrics``: genq's Prometheus metrics, for admin keys only (they count every tenant's
jobs). ``genq metrics`` serves the same without a key, for a private network."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from genq.metrics import render_metrics
from producers.gateway.auth import require_admin
from producers.gateway.errors import error_responses
from producers.gateway.state import gateway_of

router = APIRouter(
    tags=["operations"],
    dependencies=[Depends(require_admin)],
    responses=error_responses(401, 403),
)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
)
async def metrics(request: Request) -> Response:
    """Queue depth, jobs, timings and outcomes, read from the broker and the store now.
    Scrape with an admin key as the bearer token."""
    registry: CollectorRegistry = request.state.metrics
    body = await gateway_of(request).call(render_metrics, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
