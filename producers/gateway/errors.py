"""Every error leaves the gateway as ``{"error": {"code", "message", "details"}}``, never a trace.

``status_for`` is the one table from stable error code to HTTP status; the handlers below only
apply it to genq's exceptions, FastAPI's validation errors and Starlette's routing errors.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from schemas import BrokerUnavailable, GenqError
from schemas.errors import ErrorCode

log = logging.getLogger(__name__)

STATUS_BY_CODE: dict[ErrorCode, int] = {
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.WEBHOOK_URL_REFUSED: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.MODEL_NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.CONTEXT_LENGTH_EXCEEDED: 400,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.QUEUE_FULL: 429,
    ErrorCode.BROKER_UNAVAILABLE: 503,
    ErrorCode.RUNTIME_UNAVAILABLE: 503,
    ErrorCode.TIMEOUT: 504,
}
# Starlette raises these itself (no route, wrong method); they keep their status.
CODE_BY_STATUS = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.INVALID_REQUEST}
BROKER_RETRY_AFTER_SECONDS = 2


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]]


class ErrorBody(BaseModel):
    """What every non-2xx answer carries."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses."""
    return {status: {"model": ErrorBody} for status in statuses}


class Forbidden(GenqError):
    code = ErrorCode.FORBIDDEN


class PayloadTooLarge(GenqError):
    code = ErrorCode.PAYLOAD_TOO_LARGE


class UnsupportedMediaType(GenqError):
    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE


class RedisUnavailable(BrokerUnavailable):
    """Redis (broker and chunk streams) did not answer."""

    retry_after_seconds = BROKER_RETRY_AFTER_SECONDS


def status_for(error: GenqError) -> int:
    """The HTTP status of ``error``: by code; a retryable error without one is a 503."""
    status = STATUS_BY_CODE.get(error.code)
    if status is not None:
        return status
    return 503 if error.retryable else 500


def retry_after_seconds(error: GenqError) -> int | None:
    """Whole seconds for a ``Retry-After`` header, if the error says when to come back."""
    seconds = getattr(error, "retry_after_seconds", None)
    if isinstance(seconds, int | float):
        return max(1, math.ceil(seconds))
    return None


@contextmanager
def redis_errors(what: str) -> Iterator[None]:
    """Turn a Redis failure inside the block into ``broker_unavailable`` (503, Retry-After)."""
    try:
        yield
    except redis.RedisError as exc:
        raise RedisUnavailable(
            f"{what} is unavailable (redis: {exc.__class__.__name__}); retry shortly"
        ) from exc


def error_response(error: GenqError) -> JSONResponse:
    """The response for ``error``, with ``Retry-After`` / ``WWW-Authenticate`` where they apply."""
    headers: dict[str, str] = {}
    retry_after = retry_after_seconds(error)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if error.code is ErrorCode.UNAUTHORIZED:
        headers["WWW-Authenticate"] = 'Bearer realm="genq"'
    return JSONResponse(error.to_body(), status_code=status_for(error), headers=headers)


def validation_details(errors: Any) -> list[dict[str, Any]]:
    """FastAPI's error list as ``{"field", "in", "message"}`` entries."""
    details = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ())]
        where = loc[0] if loc and loc[0] in {"query", "path", "header", "body", "cookie"} else None
        field = ".".join(loc[1:] if where else loc) or "body"
        details.append({"field": field, "in": where or "body", "message": str(err.get("msg"))})
    return details


async def _genq_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GenqError)
    if status_for(exc) >= 500:
        log.warning("request failed: %s (%s)", exc.code.value, exc.message)
    return error_response(exc)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = validation_details(exc.errors())
    summary = "; ".join(f"{d['in']} {d['field']}: {d['message']}" for d in details[:5])
    return error_response(
        GenqError(f"invalid request: {summary}", code=ErrorCode.INVALID_REQUEST, details=details)
    )


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = CODE_BY_STATUS.get(exc.status_code, ErrorCode.INVALID_REQUEST)
    message = "no such endpoint" if exc.status_code == 404 else str(exc.detail)
    response = error_response(GenqError(message, code=code))
    response.status_code = exc.status_code
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
    reference = uuid.uuid4().hex[:12]
    log.error("unexpected error (reference %s)", reference, exc_info=exc)
    error = GenqError(
        f"internal error (reference {reference}); the gateway logged the details",
        code=ErrorCode.INTERNAL,
    )
    return error_response(error)


def install_error_handlers(app: FastAPI) -> None:
    """Map every failure a request can meet onto the stable error shape."""
    app.add_exception_handler(GenqError, _genq_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
