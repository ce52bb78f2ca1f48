"""Errors on the OpenAI routes leave in OpenAI's shape, ``{"error": {"message", "type",
"param", "code"}}``, with the status the SDK maps to its exception classes (400
``BadRequestError``, 401 ``AuthenticationError``, 404 ``NotFoundError``, 429
``RateLimitError``…). The statuses are genq's own (``errors.status_for``)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from producers.gateway.errors import retry_after_seconds, status_for, validation_details
from producers.gateway.openai_requests import param_of
from producers.gateway.openai_responses import openai_error, outcome_status
from schemas import ErrorCode, GenqError, InvalidRequest, JobRecord

# The SDK retries 408, 409, 429 and 5xx unless told not to; a job genq has already retried,
# or a conflicting Idempotency-Key, would only fail again.
NO_RETRY = {"x-should-retry": "false"}


def openai_error_response(
    error: GenqError, status: int | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """``error`` in OpenAI's shape, with ``Retry-After``/``WWW-Authenticate`` where they apply."""
    status = status or status_for(error)
    out = dict(headers or {})
    retry_after = retry_after_seconds(error)
    if retry_after is not None:
        out["Retry-After"] = str(retry_after)
    if error.code is ErrorCode.UNAUTHORIZED:
        out["WWW-Authenticate"] = 'Bearer realm="genq"'
    if error.code is ErrorCode.CONFLICT:
        out.update(NO_RETRY)
    param = param_of(error) if isinstance(error, InvalidRequest) else None
    return JSONResponse(openai_error(error, status, param), status_code=status, headers=out)


def job_outcome_response(record: JobRecord, error: GenqError) -> JSONResponse:
    """A job that ended without an answer (failed, cancelled, expired, dead-lettered)."""
    headers = {**NO_RETRY, "X-Genq-Job-Id": record.id}
    return openai_error_response(error, outcome_status(record), headers)


class OpenAIRoute(APIRoute):
    """A route whose every error (its dependencies' too: the API key, the rate limit) is
    answered in OpenAI's shape instead of genq's."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def openai_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except GenqError as exc:
                return openai_error_response(exc)
            except RequestValidationError as exc:
                details = validation_details(exc.errors())
                summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:3])
                return openai_error_response(
                    InvalidRequest(f"invalid request: {summary}", details=details)
                )

        return openai_errors
