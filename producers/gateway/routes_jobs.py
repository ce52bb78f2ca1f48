"""``/v1/jobs``: submit, read, list, long-poll, stream and cancel jobs, in the caller's tenant."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sse_starlette import EventSourceResponse

from genq import constants as c
from producers.cancel import cancel_job
from producers.gateway import inputs
from producers.gateway.auth import current_principal
from producers.gateway.errors import error_responses, redis_errors
from producers.gateway.limits import enforce_rate_limit
from producers.gateway.principal import Principal
from producers.gateway.routes_runtimes import check_model
from producers.gateway.state import Gateway, gateway_of
from producers.gateway.streaming import (
    MAX_SEQ,
    chunk_events,
    ping_comment,
    resume_point,
    wait_until_terminal,
)
from producers.submission import new_job, submit_job
from schemas import JobRecord, JobRequest, JobStatus, NotFound, RateLimited
from schemas.errors import InvalidRequest

LIST_LIMIT_DEFAULT = 50
LIST_LIMIT_MAX = 200
CANCEL_MESSAGES = {
    "cancelled": "the job was still queued; it will never run",
    "cancelling": "the job is running; it stops within a second and keeps its partial output",
}

router = APIRouter(
    prefix="/v1/jobs",
    tags=["jobs"],
    dependencies=[Depends(enforce_rate_limit)],
    responses=error_responses(401, 429),
)
Caller = Annotated[Principal, Depends(current_principal)]
JobId = Annotated[
    str,
    # Checked by ``inputs.job_id`` (a clearer message than a pattern error), documented here.
    Path(description="The job's id (a UUID).", max_length=64, json_schema_extra={"format": "uuid"}),
]

SUBMIT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/JobRequest"},
                "examples": {
                    "chat": {
                        "value": {
                            "messages": [{"role": "user", "content": "Say hello."}],
                            "max_tokens": 32,
                            "priority": 7,
                        }
                    },
                    "completion": {
                        "value": {
                            "kind": "completion",
                            "prompt": "Once upon a time",
                            "lane": "batch",
                        }
                    },
                },
            }
        },
    }
}


class JobPage(BaseModel):
    """One page of jobs, newest first; pass ``next_cursor`` back as ``cursor`` for the next."""

    data: list[JobRecord]
    next_cursor: str | None


class CancelResult(BaseModel):
    job: JobRecord
    # cancelled | cancelling | already_<status> (a no-op: the job had finished)
    outcome: str
    message: str


def record_response(record: JobRecord, status_code: int = 200, **headers: str) -> Response:
    """The record as JSON, serialized by pydantic in one step: the bytes ``JSONResponse`` makes
    of ``model_dump(mode="json")``, in half the time (two of these per job on the hot path)."""
    return Response(
        record.model_dump_json(),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


@router.post(
    "",
    status_code=201,
    response_model=JobRecord,
    openapi_extra=SUBMIT_BODY,
    responses={
        200: {"model": JobRecord, "description": "A replay of an Idempotency-Key: the same job."},
        **error_responses(400, 404, 409, 413, 415, 503),
    },
)
async def submit(
    request: Request,
    principal: Caller,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> Response:
    """Submit a job: 201 with its queued record, or 200 with the original on a replayed key."""
    gateway = gateway_of(request)
    body = await request.body()
    job = inputs.job_request(request.headers.get("content-type"), body, idempotency_key)
    await check_model(gateway, job.model)
    if job.idempotency_key is not None:  # replay and conflict checks read the store first
        record, created = await gateway.call(accept, gateway, job, principal.tenant)
    else:
        validate = partial(
            new_job, gateway.settings, job, principal.tenant, webhook_check=gateway.webhook_check
        )
        # A webhook URL is checked in a thread (it resolves the host); the rest is quick.
        new = await gateway.call(validate) if job.webhook_url is not None else validate()
        record, created = await gateway.batcher.submit(new), True
    return record_response(record, 201 if created else 200, Location=f"/v1/jobs/{record.id}")


def accept(gateway: Gateway, job: JobRequest, tenant: str) -> tuple[JobRecord, bool]:
    """Cap check, store, enqueue (in a worker thread: the store and Celery are sync)."""
    try:
        gateway.queued.check(tenant)
    except RateLimited:
        # A retry of a job already accepted gets its job back, even at the cap.
        if job.idempotency_key is None or not gateway.store.idempotency_key_used(
            tenant, job.idempotency_key
        ):
            raise
    record, created = submit_job(
        gateway.celery,
        gateway.store,
        gateway.settings,
        job,
        tenant=tenant,
        webhook_check=gateway.webhook_check,
    )
    if created:
        gateway.queued.accepted(tenant)
    return record, created


@router.get("", response_model=JobPage, responses=error_responses(400))
async def list_jobs(
    request: Request,
    principal: Caller,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this state.")] = None,
    lane: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=LIST_LIMIT_MAX)] = LIST_LIMIT_DEFAULT,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> JSONResponse:
    """The caller's jobs, newest first, a page at a time."""
    gateway = gateway_of(request)
    if lane is not None and lane not in gateway.settings.lanes:
        raise InvalidRequest(
            f"unknown lane {lane!r}; this deployment has {', '.join(gateway.settings.lanes)}",
            details=[{"field": "lane", "in": "query", "message": "unknown lane"}],
        )
    checked_cursor = inputs.cursor(cursor)
    page = await gateway.call(
        lambda: gateway.store.list(
            tenant=principal.scope, status=status, lane=lane, limit=limit, cursor=checked_cursor
        )
    )
    data = [r.model_dump(mode="json") for r in page.records]
    return JSONResponse({"data": data, "next_cursor": page.next_cursor})


@router.get("/{job_id}", response_model=JobRecord, responses=error_responses(400, 404))
async def get_job(
    request: Request,
    principal: Caller,
    job_id: JobId,
    history: Annotated[bool, Query(description="include every state transition")] = False,
) -> Response:
    """One job's record; with ``history=true`` also its transitions (from, to, at, worker,
    reason)."""
    gateway = gateway_of(request)
    ident = inputs.job_id(job_id)
    if history:
        found = await gateway.call(_with_history, gateway, ident, principal.scope)
        if found is None:
            raise NotFound(f"no job {job_id}")
        return record_response(found)
    return record_response(await gateway.job(ident, principal.scope))


def _with_history(gateway: Any, job_id: str, tenant: str | None) -> JobRecord | None:
    found: JobRecord | None = gateway.store.get(job_id, tenant, history=True)
    return found


@router.get("/{job_id}/wait", response_model=JobRecord, responses=error_responses(400, 404))
async def wait_for_job(
    request: Request,
    principal: Caller,
    job_id: JobId,
    timeout: Annotated[
        float,
        Query(
            ge=0,
            le=c.GATEWAY_WAIT_MAX_SECONDS,
            allow_inf_nan=False,
            description="Seconds to wait for a terminal state; then the current record.",
        ),
    ] = c.GATEWAY_WAIT_DEFAULT_SECONDS,
) -> Response:
    """Long poll: the record as soon as the job is terminal, or as it stands at the timeout."""
    gateway = gateway_of(request)
    record = await wait_until_terminal(gateway, inputs.job_id(job_id), principal.scope, timeout)
    return record_response(record)


@router.get(
    "/{job_id}/stream",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "Server-sent events `start` (an attempt began), `delta`, `reset`, `end` "
            "(then the stream closes) "
            "and, if the stream breaks, `error`; `id` is the chunk seq.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **error_responses(400, 404),
    },
)
async def stream_job(
    request: Request,
    principal: Caller,
    job_id: JobId,
    starting_after: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=32)] = None,
) -> EventSourceResponse:
    """The job's output as it is generated; resumes after ``Last-Event-ID``/``starting_after``."""
    gateway = gateway_of(request)
    after = resume_point(last_event_id, starting_after)
    record = await gateway.job(inputs.job_id(job_id), principal.scope)
    return EventSourceResponse(
        await chunk_events(gateway, record, after),
        ping=gateway.settings.gateway_sse_ping_seconds,
        ping_message_factory=ping_comment,
        headers={"Cache-Control": "no-store"},
    )


@router.post("/{job_id}/cancel", response_model=CancelResult, responses=error_responses(400, 404))
async def cancel(request: Request, principal: Caller, job_id: JobId) -> JSONResponse:
    """Cancel: a queued job never runs, a running one stops; a finished one is left as is."""
    gateway = gateway_of(request)
    with redis_errors("the cancel flag store"):
        outcome = await gateway.call(
            partial(cancel_job, tenant=principal.scope),
            gateway.celery,
            gateway.store,
            gateway.sync_redis,
            gateway.settings,
            inputs.job_id(job_id),
        )
    status = outcome.record.status.value
    message = CANCEL_MESSAGES.get(
        outcome.outcome, f"the job had already finished ({status}); nothing was changed"
    )
    body = {
        "job": outcome.record.model_dump(mode="json"),
        "outcome": outcome.outcome,
        "message": message,
    }
    return JSONResponse(body)
