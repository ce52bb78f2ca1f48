"""The OpenAI front door: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``
and ``/v1/models``, in OpenAI's shapes, for the official SDK with only ``base_url`` changed.

Each request is a genq job, accepted the way ``POST /v1/jobs`` accepts one (same keys,
tenants, idempotency, batcher), queued in the interactive lane at ``X-Genq-Priority``
(default 7) and run by a worker; the answer is read from the job's chunk stream and record.
A client that hangs up cancels its job (``hangups``: after a grace for a retry, if it sent an
``Idempotency-Key``). A model with ``openai_max_queued`` jobs queued answers
429 with ``Retry-After`` rather than hold one more connection for a turn that is far away.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Message

from genq import constants as c
from producers.gateway import hangups, inputs
from producers.gateway.auth import current_principal
from producers.gateway.limits import enforce_rate_limit
from producers.gateway.openai_errors import OpenAIRoute, job_outcome_response
from producers.gateway.openai_requests import (
    OpenAICall,
    chat_call,
    completion_call,
    embedding_call,
    priority_from_header,
)
from producers.gateway.openai_responses import (
    ChunkShapes,
    model_list,
    outcome_error,
    response_body,
)
from producers.gateway.openai_stream import openai_events
from producers.gateway.principal import Principal
from producers.gateway.quotas import QueuedGauge
from producers.gateway.routes_jobs import accept
from producers.gateway.state import Gateway, gateway_of
from producers.gateway.streaming import ping_comment, wait_until_terminal
from producers.submission import new_job
from schemas import ErrorCode, GenqError, InvalidRequest, JobRecord, JobRequest, RateLimited

CallBuilder = Callable[[dict[str, Any], int, str, str | None], OpenAICall]
CLIENT_CLOSED_REQUEST = 499  # nobody reads it: the client has gone

# OpenAI's own API reference documents these routes (and its SDK is their client), so they
# stay out of genq's OpenAPI document, which describes genq's API.
router = APIRouter(
    prefix="/v1",
    tags=["openai"],
    route_class=OpenAIRoute,
    dependencies=[Depends(enforce_rate_limit)],
    include_in_schema=False,
)
Caller = Annotated[Principal, Depends(current_principal)]


class UnknownModel(InvalidRequest):
    code = ErrorCode.MODEL_NOT_FOUND

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model `{model}` does not exist: this genq stack serves the models "
            "GET /v1/models lists",
            details=[{"field": "model", "code": "model_not_found"}],
        )


@router.post("/chat/completions")
async def chat_completions(request: Request, principal: Caller) -> Response:
    """OpenAI's chat completion (``stream`` too), run as a genq chat job."""
    return await run_openai_call(request, principal, chat_call)


@router.post("/completions")
async def completions(request: Request, principal: Caller) -> Response:
    """OpenAI's (legacy) text completion, run as a genq completion job."""
    return await run_openai_call(request, principal, completion_call)


@router.post("/embeddings")
async def embeddings(request: Request, principal: Caller) -> Response:
    """OpenAI's embeddings, run as a genq embedding job."""
    return await run_openai_call(request, principal, embedding_call)


@router.get("/models")
async def list_models(request: Request, _principal: Caller) -> JSONResponse:
    """The models this stack serves, in OpenAI's list shape."""
    served = gateway_of(request).models
    names = await anyio.to_thread.run_sync(served.names)
    return JSONResponse(model_list(names, served.since))


@router.get("/models/{model:path}")
async def retrieve_model(request: Request, _principal: Caller, model: str) -> JSONResponse:
    """One served model, or 404 ``model_not_found``."""
    served = gateway_of(request).models
    if not await anyio.to_thread.run_sync(served.serves, model):
        raise UnknownModel(model)
    return JSONResponse(model_list([model], served.since)["data"][0])


async def run_openai_call(request: Request, principal: Principal, build: CallBuilder) -> Response:
    """Check, submit, then answer: streamed as it is generated, or whole when done."""
    gateway = gateway_of(request)
    body = inputs.json_object(request.headers.get("content-type"), await request.body())
    key = request.headers.get("Idempotency-Key")
    priority = priority_from_header(
        request.headers.get("X-Genq-Priority"), c.OPENAI_DEFAULT_PRIORITY
    )
    call = build(body, priority, c.LANE_INTERACTIVE, key)
    model = await served_model(gateway, call.job)
    record = await submit(gateway, call.job, principal.tenant, model)
    token = await hangups.wait_on(gateway, record.id) if key is not None else None
    headers = {"X-Genq-Job-Id": record.id}
    if call.stream:
        shapes = ChunkShapes(record, include_usage=call.include_usage)

        async def client_left(_message: Message) -> None:
            await hangups.client_hung_up(gateway, record.id, token)

        return EventSourceResponse(
            then_done_waiting(openai_events(gateway, record, shapes), gateway, record.id, token),
            ping=gateway.settings.gateway_sse_ping_seconds,
            ping_message_factory=ping_comment,
            headers={**headers, "Cache-Control": "no-store"},
            client_close_handler_callable=client_left,
        )
    final = await until_done_or_departed(request, gateway, record.id)
    if final is None:
        await hangups.client_hung_up(gateway, record.id, token)
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    await hangups.done_waiting(gateway, record.id, token)
    error = outcome_error(final)
    if error is not None:
        return job_outcome_response(final, error)
    return JSONResponse(response_body(final, as_base64=call.base64), headers=headers)


async def served_model(gateway: Gateway, job: JobRequest) -> str:
    """The job's model (the default if it names none), or 404 if this stack does not serve it."""
    model = job.model or gateway.settings.default_model
    served = gateway.models  # the default model is served without asking the runtime
    if model != served.default_model and not await anyio.to_thread.run_sync(served.serves, model):
        raise UnknownModel(model)
    return model


async def then_done_waiting(
    events: AsyncIterator[ServerSentEvent], gateway: Gateway, job_id: str, token: str | None
) -> AsyncIterator[ServerSentEvent]:
    """``events``, then the request no longer waits on the job (a hang-up says so itself)."""
    async for event in events:
        yield event
    await hangups.done_waiting(gateway, job_id, token)


async def submit(gateway: Gateway, job: JobRequest, tenant: str, model: str) -> JobRecord:
    """Accept ``job`` the way ``POST /v1/jobs`` does, after the model's queue cap."""
    if job.idempotency_key is not None:
        record, _created = await gateway.call(_accept_keyed, gateway, job, tenant, model)
        return record
    await gateway.call(check_model_queue, gateway, model)
    new = new_job(gateway.settings, job, tenant, webhook_check=gateway.webhook_check)
    record = await gateway.batcher.submit(new)
    model_queue(gateway).accepted(model)
    return record


def _accept_keyed(
    gateway: Gateway, job: JobRequest, tenant: str, model: str
) -> tuple[JobRecord, bool]:
    assert job.idempotency_key is not None
    try:
        check_model_queue(gateway, model)
    except RateLimited:
        # A retry of a request already accepted gets its job back, even at the cap.
        if not gateway.store.idempotency_key_used(tenant, job.idempotency_key):
            raise
    record, created = accept(gateway, job, tenant)
    if created:
        model_queue(gateway).accepted(model)
    return record, created


class ModelQueue(QueuedGauge):
    """A model's queued requests, for ``openai_max_queued``. Batch lines do not count: they
    wait in their own lane, behind these requests, not ahead of them.

    Counted like a tenant's queue (``QueuedGauge``): the store's count at most every
    ``GATEWAY_QUEUED_RECOUNT_SECONDS`` plus what this gateway accepted since, and always
    recounted before a refusal. The count reads every queued job of the store (10,000
    queued batch lines cost it 6-40 ms), which an interactive request paid each time.
    """

    def count(self, model: str) -> int:
        return self.store.count_queued_for_model(model, excluding_lane=c.LANE_BATCH)

    def refusal(self, model: str, queued: int) -> str:
        return f"model {model!r} has {queued} requests queued (limit {self.cap}); try again later"


# One per gateway (a process may run several in tests).
_MODEL_QUEUES: dict[int, ModelQueue] = {}


def model_queue(gateway: Gateway) -> ModelQueue:
    found = _MODEL_QUEUES.get(id(gateway))
    if found is None or found.store is not gateway.store:
        found = ModelQueue(
            gateway.store, gateway.settings.openai_max_queued, c.GATEWAY_QUEUED_RECOUNT_SECONDS
        )
        _MODEL_QUEUES[id(gateway)] = found
    return found


def check_model_queue(gateway: Gateway, model: str) -> None:
    """429 ``queue_full`` while ``model`` has ``openai_max_queued`` requests queued."""
    model_queue(gateway).check(model)


async def until_done_or_departed(
    request: Request, gateway: Gateway, job_id: str
) -> JobRecord | None:
    """The job's terminal record, or None if the client hung up first."""
    outcome: list[JobRecord | GenqError] = []
    async with anyio.create_task_group() as group:

        async def wait() -> None:
            try:
                outcome.append(await until_terminal(gateway, job_id))
            except GenqError as exc:
                outcome.append(exc)
            group.cancel_scope.cancel()

        async def watch() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            group.cancel_scope.cancel()

        group.start_soon(wait)
        group.start_soon(watch)
    if not outcome:
        return None
    if isinstance(outcome[0], GenqError):
        raise outcome[0]
    return outcome[0]


async def until_terminal(gateway: Gateway, job_id: str) -> JobRecord:
    while True:
        record = await wait_until_terminal(gateway, job_id, None, c.GATEWAY_WAIT_MAX_SECONDS)
        if record.status.terminal:
            return record
