"""``/v1/admin/dead-letters``: list, inspect, requeue and purge, for admin keys only.

The same operations as ``genq dlq`` (``genq.dead_letters``); each runs in a store thread.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from genq import dead_letters as dlq
from producers.gateway.auth import Principal, require_admin
from producers.gateway.errors import error_responses
from producers.gateway.state import gateway_of
from schemas import GenqError

router = APIRouter(
    prefix="/v1/admin/dead-letters",
    tags=["dead letters"],
    dependencies=[Depends(require_admin)],
    responses=error_responses(401, 403),
)
Ident = Annotated[
    str,
    Path(min_length=1, max_length=64, description="A dead-letter id, or the id of its job."),
]


class Selection(BaseModel):
    """Which dead letters to act on: explicit ids, or ``all``."""

    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=1000
    )
    all: bool = False


def _operator(principal: Principal) -> str:
    return f"api:{principal.key_id or 'admin-key'}"


@router.get("")
async def list_dead_letters(
    request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> dict[str, Any]:
    """Open dead letters, oldest first."""
    gateway = gateway_of(request)
    letters = await gateway.call(dlq.list_dead_letters, gateway.store, limit)
    return {"data": [d.summary() for d in letters]}


@router.get("/{ident}", responses=error_responses(404))
async def show_dead_letter(request: Request, ident: Ident) -> dict[str, Any]:
    """One dead letter in full, raw bytes included for an undecodable message."""
    gateway = gateway_of(request)
    letter = await gateway.call(dlq.find_dead_letter, gateway.store, ident)
    return letter.summary()


@router.post("/{ident}/requeue", responses=error_responses(404, 409))
async def requeue_one(
    request: Request, ident: Ident, principal: Annotated[Principal, Depends(require_admin)]
) -> dict[str, Any]:
    """Run the job again: same id, attempts reset, recorded in its history."""
    gateway = gateway_of(request)
    return await gateway.call(_requeue, gateway, ident, _operator(principal))


@router.post("/{ident}/purge", responses=error_responses(404, 409))
async def purge_one(request: Request, ident: Ident) -> dict[str, Any]:
    """Drop the dead letter for good (the job record stays, ``dead_lettered``)."""
    gateway = gateway_of(request)
    return await gateway.call(dlq.purge, gateway.celery, gateway.store, ident)


@router.post("/requeue", responses=error_responses(400))
async def requeue_many(
    request: Request,
    selection: Selection,
    principal: Annotated[Principal, Depends(require_admin)],
) -> dict[str, Any]:
    """Requeue several (``ids``) or every open dead letter (``all``); reports each outcome."""
    gateway = gateway_of(request)
    idents = await _selected(request, selection)
    operator = _operator(principal)
    return {"results": [await _each(gateway.call(_requeue, gateway, i, operator)) for i in idents]}


@router.post("/purge", responses=error_responses(400))
async def purge_many(request: Request, selection: Selection) -> dict[str, Any]:
    """Purge several (``ids``) or every open dead letter (``all``); reports each outcome."""
    gateway = gateway_of(request)
    idents = await _selected(request, selection)
    return {
        "results": [
            await _each(gateway.call(dlq.purge, gateway.celery, gateway.store, i)) for i in idents
        ]
    }


def _requeue(gateway: Any, ident: str, operator: str) -> dict[str, Any]:
    return dlq.requeue(gateway.celery, gateway.store, gateway.settings, ident, operator=operator)


async def _selected(request: Request, selection: Selection) -> list[str]:
    from schemas import InvalidRequest

    if selection.all == bool(selection.ids):
        raise InvalidRequest("give either 'ids' or 'all': true")
    if selection.ids:
        return selection.ids
    gateway = gateway_of(request)
    letters = await gateway.call(dlq.list_dead_letters, gateway.store, 100_000)
    return [d.id for d in letters]


async def _each(pending: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = await pending
        return {"ok": True, **result}
    except GenqError as exc:
        return {"ok": False, **exc.to_body()}
