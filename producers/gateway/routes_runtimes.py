"""``/v1/admin/runtimes``: the runtime fleet (each endpoint's models, slots, requests in flight,
state, errors, time to first token) and the jobs waiting per model, for admin keys only."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request

from producers.fleet_models import FleetModels
from producers.gateway.auth import require_admin
from producers.gateway.errors import error_responses
from producers.gateway.state import Gateway, gateway_of

router = APIRouter(
    prefix="/v1/admin/runtimes",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses=error_responses(401, 403),
)


def fleet_view(gateway: Gateway) -> dict[str, Any]:
    """What ``genq runtimes`` shows, as JSON."""
    status = gateway.fleet
    return {
        "declared": status.fleet.declared,
        "endpoints": [row.to_json() for row in status.endpoints()],
        "waiting": status.waiting(),
    }


@router.get("")
async def list_runtimes(request: Request) -> dict[str, Any]:
    """The fleet's endpoints and backlog."""
    gateway = gateway_of(request)
    return await anyio.to_thread.run_sync(fleet_view, gateway)


async def check_model(gateway: Gateway, model: str | None) -> None:
    """With a declared fleet, refuse a job whose model no endpoint serves (404
    ``model_not_found``, listing the models there are)."""
    models = gateway.models
    if isinstance(models, FleetModels):
        await anyio.to_thread.run_sync(models.check, model or gateway.settings.default_model)
