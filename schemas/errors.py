"""Stable error codes and the one exception tree every layer raises."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    INVALID_REQUEST = "invalid_request"
    NOT_FOUND = "not_found"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    QUEUE_FULL = "queue_full"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    CONFLICT = "conflict"
    MODEL_NOT_FOUND = "model_not_found"
    CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
    RUNTIME_UNAVAILABLE = "runtime_unavailable"
    RUNTIME_ERROR = "runtime_error"
    BROKER_UNAVAILABLE = "broker_unavailable"
    RETRIES_EXHAUSTED = "retries_exhausted"
    WORKER_CRASHED = "worker_crashed"
    UNDECODABLE = "undecodable"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    TIMEOUT = "timeout"
    WEBHOOK_URL_REFUSED = "webhook_url_refused"
    INTERNAL = "internal"


class GenqError(Exception):
    """Root of every genq error. ``code`` is stable; ``message`` is for a person."""

    code: ErrorCode = ErrorCode.INTERNAL
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or []

    def to_body(self) -> dict[str, Any]:
        """The wire shape: ``{"error": {"code", "message", "details"}}``."""
        return {
            "error": {"code": self.code.value, "message": self.message, "details": self.details}
        }


class TransientError(GenqError):
    """Worth retrying later (runtime down, 429/503, dropped stream)."""

    code = ErrorCode.RUNTIME_UNAVAILABLE
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        retry_after_seconds: float | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message, code=code, details=details)
        self.retry_after_seconds = retry_after_seconds


class PermanentError(GenqError):
    """Retrying cannot help (bad request to the runtime, unknown model, context too long)."""

    code = ErrorCode.RUNTIME_ERROR


class InvalidRequest(GenqError):
    code = ErrorCode.INVALID_REQUEST


class NotFound(GenqError):
    code = ErrorCode.NOT_FOUND


class Conflict(GenqError):
    code = ErrorCode.CONFLICT


class Unauthorized(GenqError):
    code = ErrorCode.UNAUTHORIZED


class RateLimited(GenqError):
    code = ErrorCode.RATE_LIMITED

    def __init__(self, message: str, *, retry_after_seconds: float, code: ErrorCode | None = None):
        super().__init__(message, code=code)
        self.retry_after_seconds = retry_after_seconds


class BrokerUnavailable(GenqError):
    code = ErrorCode.BROKER_UNAVAILABLE
    retryable = True
