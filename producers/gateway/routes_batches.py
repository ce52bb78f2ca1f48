"""OpenAI's ``/v1/batches``: create (answered ``validating`` at once; the batch driver checks
the lines and makes each a genq job in the batch lane), list, retrieve, cancel. Same keys,
tenants and error shape as the OpenAI front door; the batch's life after it is accepted is
``batches.BatchLifecycle``'s."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from producers.gateway import inputs
from producers.gateway.auth import current_principal
from producers.gateway.batch_objects import list_object
from producers.gateway.batch_requests import check_new_batch
from producers.gateway.limits import enforce_rate_limit
from producers.gateway.openai_errors import OpenAIRoute
from producers.gateway.principal import Principal
from producers.gateway.state import gateway_of
from schemas import NotFound

BATCH_LIST_MAX = 100

router = APIRouter(
    prefix="/v1",
    tags=["openai"],
    route_class=OpenAIRoute,
    dependencies=[Depends(enforce_rate_limit)],
    include_in_schema=False,
)
Caller = Annotated[Principal, Depends(current_principal)]


@router.post("/batches")
async def create_batch(request: Request, principal: Caller) -> JSONResponse:
    """The batch, ``validating``: its lines are checked and queued by the batch driver (a bad
    line fails it with ``errors``; otherwise it is ``in_progress`` once all are queued)."""
    gateway = gateway_of(request)
    body = inputs.json_object(request.headers.get("content-type"), await request.body())
    headers = request.headers
    wanted = check_new_batch(body, headers.get("X-Genq-Priority"), headers.get("Idempotency-Key"))
    batch = await gateway.call(gateway.batches.create, principal.tenant, wanted)
    view = await gateway.call(gateway.batches.view, batch)
    return JSONResponse(view)


@router.get("/batches")
async def list_batches(
    request: Request,
    principal: Caller,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=BATCH_LIST_MAX)] = 20,
) -> JSONResponse:
    """The caller's batches, newest first, ``after`` a batch id."""
    gateway = gateway_of(request)
    lifecycle = gateway.batches

    def page() -> list[dict[str, object]]:
        found = lifecycle.batches.page(principal.scope, after=after, limit=limit + 1)
        return [lifecycle.view(batch) for batch in found]

    data = await gateway.call(page)
    return JSONResponse(list_object(data[:limit], has_more=len(data) > limit))


@router.get("/batches/{batch_id}")
async def retrieve_batch(request: Request, principal: Caller, batch_id: str) -> JSONResponse:
    gateway = gateway_of(request)
    lifecycle = gateway.batches
    batch = await gateway.call(lifecycle.batches.get, batch_id, principal.scope)
    if batch is None:
        raise NotFound(f"No batch found with id '{batch_id}'")
    return JSONResponse(await gateway.call(lifecycle.view, batch))


@router.post("/batches/{batch_id}/cancel")
async def cancel_batch(request: Request, principal: Caller, batch_id: str) -> JSONResponse:
    """``cancelling`` (then ``cancelled`` once its running lines stopped), from
    ``validating`` or ``in_progress``."""
    gateway = gateway_of(request)
    lifecycle = gateway.batches
    batch = await anyio.to_thread.run_sync(lifecycle.cancel, batch_id, principal.scope)
    return JSONResponse(await gateway.call(lifecycle.view, batch))
