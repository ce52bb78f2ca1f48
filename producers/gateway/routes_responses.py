"""Background responses: ``/v1/responses`` in the Responses API's shapes, text only.

Each response is a genq chat job, accepted like the chat front door's (same keys, tenants,
Idempotency-Key, model queue cap), queued in the interactive lane at ``X-Genq-Priority``
(default 7). ``background: true`` answers at once with the queued response (or, with
``stream: true``, streams its events); the job runs whether or not anybody is listening.
``background: false`` waits for the answer like ``/v1/chat/completions``, and a client that
hangs up cancels it (``hangups``). Retrieve, stream (resuming after ``starting_after``),
cancel and delete work on either, within the caller's tenant.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Message

from genq import constants as c
from genq.redis_keys import stream_key
from genq.store.retention import delete_finished_job
from producers.cancel import cancel_job
from producers.gateway import hangups, inputs
from producers.gateway.auth import current_principal
from producers.gateway.errors import redis_errors
from producers.gateway.limits import enforce_rate_limit
from producers.gateway.openai_errors import OpenAIRoute, job_outcome_response
from producers.gateway.openai_requests import UnsupportedParam, priority_from_header
from producers.gateway.openai_responses import outcome_error
from producers.gateway.principal import Principal
from producers.gateway.responses_requests import Previous, previous_response_id, response_call
from producers.gateway.responses_shapes import (
    COMPLETED,
    FAILED,
    INCOMPLETE,
    deleted_body,
    handed_on,
    input_items,
    is_response,
    item_page,
    job_id_of,
    response_object,
    response_status,
)
from producers.gateway.responses_stream import NOTHING_SENT, response_events, text_so_far
from producers.gateway.routes_openai import (
    CLIENT_CLOSED_REQUEST,
    served_model,
    submit,
    then_done_waiting,
    until_done_or_departed,
)
from producers.gateway.state import Gateway, gateway_of
from producers.gateway.streaming import (
    MAX_SEQ,
    ping_comment,
    resume_point,
    wait_until_terminal,
)
from schemas import Conflict, JobRecord, JobStatus, NotFound

router = APIRouter(
    prefix="/v1/responses",
    tags=["openai"],
    route_class=OpenAIRoute,
    dependencies=[Depends(enforce_rate_limit)],
    include_in_schema=False,  # OpenAI's API reference documents these, as routes_openai's
)
Caller = Annotated[Principal, Depends(current_principal)]
NO_STORE = {"Cache-Control": "no-store"}
INPUT_ITEMS_LIMIT_DEFAULT = 20
INPUT_ITEMS_LIMIT_MAX = 100


@router.post("")
async def create_response(request: Request, principal: Caller) -> Response:
    """Create a response: queued in the background, or answered when done."""
    gateway = gateway_of(request)
    body = inputs.json_object(request.headers.get("content-type"), await request.body())
    key = request.headers.get("Idempotency-Key")
    priority = priority_from_header(
        request.headers.get("X-Genq-Priority"), c.OPENAI_DEFAULT_PRIORITY
    )
    previous = await _previous(gateway, principal, previous_response_id(body))
    call = response_call(body, priority, c.LANE_INTERACTIVE, key, previous)
    model = await served_model(gateway, call.job)
    record = await submit(gateway, call.job, principal.tenant, model)
    headers = {"X-Genq-Job-Id": record.id}
    if call.background:
        if call.stream:
            return _event_stream(gateway, response_events(gateway, record), headers)
        return JSONResponse(response_object(record), headers=headers)
    return await _answer_in_foreground(request, gateway, record, headers, stream=call.stream)


async def _answer_in_foreground(
    request: Request, gateway: Gateway, record: JobRecord, headers: dict[str, str], *, stream: bool
) -> Response:
    """``background: false``: the answer on this request; a hang-up cancels the job."""
    key = request.headers.get("Idempotency-Key")
    token = await hangups.wait_on(gateway, record.id) if key is not None else None
    if stream:

        async def client_left(_message: Message) -> None:
            await hangups.client_hung_up(gateway, record.id, token)

        events = then_done_waiting(response_events(gateway, record), gateway, record.id, token)
        return _event_stream(gateway, events, headers, client_left)
    final = await until_done_or_departed(request, gateway, record.id)
    if final is None:
        await hangups.client_hung_up(gateway, record.id, token)
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    await hangups.done_waiting(gateway, record.id, token)
    error = outcome_error(final) if response_status(final) == FAILED else None
    if error is not None:
        return job_outcome_response(final, error)
    return JSONResponse(response_object(final), headers=headers)


def _event_stream(
    gateway: Gateway,
    events: AsyncIterator[ServerSentEvent],
    headers: dict[str, str],
    client_left: Callable[[Message], Awaitable[None]] | None = None,
) -> EventSourceResponse:
    return EventSourceResponse(
        events,
        ping=gateway.settings.gateway_sse_ping_seconds,
        ping_message_factory=ping_comment,
        headers={**headers, **NO_STORE},
        client_close_handler_callable=client_left,
    )


async def _find(gateway: Gateway, principal: Principal, ident: str) -> JobRecord:
    """The response ``ident`` names, if the caller may see it; anything else is a 404."""
    job_id = job_id_of(ident)
    record = await gateway.find(job_id, principal.scope) if job_id is not None else None
    if record is None or not is_response(record):
        raise NotFound(f"No response found with id '{ident[:80]}'.")
    return record


async def _previous(gateway: Gateway, principal: Principal, ident: str | None) -> Previous | None:
    """The finished response a request continues, if it names one (another tenant's, or one
    that is gone, is a 404)."""
    if ident is None:
        return None
    record = await _find(gateway, principal, ident)
    status = response_status(record)
    if status not in (COMPLETED, INCOMPLETE):
        raise UnsupportedParam(
            "previous_response_id",
            f"response {ident[:80]} is {status}: only a completed or incomplete response can "
            "be continued",
            code="invalid_value",
        )
    return Previous(ident, handed_on(record))


@router.get("/{response_id}")
async def retrieve_response(
    request: Request,
    principal: Caller,
    response_id: str,
    stream: Annotated[bool, Query()] = False,
    starting_after: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=32)] = None,
) -> Response:
    """The response as it stands; with ``stream=true`` its events, after ``starting_after``
    (or ``Last-Event-ID``) if given, to its terminal event."""
    gateway = gateway_of(request)
    record = await _find(gateway, principal, response_id)
    if not stream:
        text = await text_so_far(gateway, record.id) if record.status is JobStatus.RUNNING else None
        return JSONResponse(response_object(record, text_so_far=text), headers=NO_STORE)
    resuming = starting_after is not None or bool(last_event_id and last_event_id.strip())
    after = resume_point(last_event_id, starting_after) if resuming else NOTHING_SENT
    return _event_stream(gateway, response_events(gateway, record, after), {})


@router.get("/{response_id}/input_items")
async def list_input_items(
    request: Request,
    principal: Caller,
    response_id: str,
    after: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=INPUT_ITEMS_LIMIT_MAX)] = INPUT_ITEMS_LIMIT_DEFAULT,
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
) -> JSONResponse:
    """The response's input messages (not its instructions), a page at a time."""
    record = await _find(gateway_of(request), principal, response_id)
    page = item_page(input_items(record), after=after, limit=limit, ascending=order == "asc")
    return JSONResponse(page)


@router.post("/{response_id}/cancel")
async def cancel_response(request: Request, principal: Caller, response_id: str) -> JSONResponse:
    """Cancel: a queued response never runs, one in progress stops (within a second, keeping
    its text so far); a finished one is answered as it is."""
    gateway = gateway_of(request)
    record = await _stopped(gateway, principal, await _find(gateway, principal, response_id))
    return JSONResponse(response_object(record))


async def _stopped(gateway: Gateway, principal: Principal, record: JobRecord) -> JobRecord:
    """Cancel ``record``'s job unless it has finished; its record once stopped, or as it
    stands after ``RESPONSES_STOP_WAIT_SECONDS``."""
    if record.status.terminal:
        return record
    with redis_errors("the cancel flag store"):
        outcome = await gateway.call(
            partial(cancel_job, tenant=principal.scope),
            gateway.celery,
            gateway.store,
            gateway.sync_redis,
            gateway.settings,
            record.id,
        )
    if outcome.record.status.terminal:
        return outcome.record
    return await wait_until_terminal(
        gateway, record.id, principal.scope, c.RESPONSES_STOP_WAIT_SECONDS
    )


@router.delete("/{response_id}")
async def delete_response(request: Request, principal: Caller, response_id: str) -> JSONResponse:
    """Delete the response (its job, history and stream); one still running is cancelled
    first."""
    gateway = gateway_of(request)
    record = await _stopped(gateway, principal, await _find(gateway, principal, response_id))
    if record.status is JobStatus.DEAD_LETTERED:
        raise Conflict(
            f"response {response_id} is held in the dead-letter queue; an operator requeues "
            "or purges it there"
        )
    if not record.status.terminal:
        raise Conflict(f"response {response_id} is still stopping; try the delete again")
    engine = gateway.store.engine
    if not await gateway.call(delete_finished_job, engine, record.id, principal.scope):
        raise NotFound(f"No response found with id '{response_id[:80]}'.")
    with redis_errors("the response's event stream"):
        await gateway.redis.delete(stream_key(record.id))
    return JSONResponse(deleted_body(response_id))
