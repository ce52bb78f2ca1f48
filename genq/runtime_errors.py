"""How an LLM runtime's HTTP answers read as genq errors, the same for every caller.

Whatever goes wrong on the wire leaves here as ``TransientError`` (retry later) or
``PermanentError`` (retrying cannot help), never as an httpx exception, and its message names
the runtime and says what to do, without any secret. The runtime adapters (``workers``) use it
for generations; the gateway's readiness probe (:mod:`genq.runtime_health`) for health.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from schemas import ErrorCode, PermanentError, TransientError

__all__ = [
    "RuntimeFailure",
    "describe_target",
    "error_for_status",
    "error_from_response",
    "error_from_stream_message",
    "json_object",
    "parse_retry_after",
    "runtime_message",
    "transport_errors",
]

RuntimeFailure = TransientError | PermanentError

_CONTEXT_RE = re.compile(r"context[ _](length|window|size)|exceed_context|maximum context", re.I)
_MODEL_MISSING_RE = re.compile(
    r"model\b[^.]{0,160}?(not found|does not exist)|model_not_found", re.I
)
_SECRET_RE = re.compile(
    r"(bearer\s+)\S+|\bsk-[A-Za-z0-9_-]{8,}|(api[_-]?key[\"'=:\s]+)[^\s\"',]+", re.I
)
_EXCERPT_CHARS = 300


def describe_target(client: httpx.Client, runtime: str, path: str) -> str:
    """``"ollama runtime at http://host:port/api/chat"``: no credentials, no query string."""
    base = client.base_url
    port = f":{base.port}" if base.port else ""
    prefix = base.path.rstrip("/")
    return f"{runtime} runtime at {base.scheme}://{base.host}{port}{prefix}{path}"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def runtime_message(body: str) -> str:
    """The runtime's own error text from a JSON or plain body, trimmed, secrets masked."""
    text = body.strip()
    with contextlib.suppress(ValueError):
        text = _message_in(json.loads(text)) or text
    text = _SECRET_RE.sub(lambda m: (m.group(1) or m.group(2) or "") + "***", text)
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "..."


def _message_in(payload: Any) -> str:
    if not isinstance(payload, dict):
        return ""
    for key in ("error", "detail", "message"):
        value = payload.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and isinstance(value.get("message"), str):
            return str(value["message"])
        if isinstance(value, list) and value:
            return "; ".join(_message_in(item) or str(item) for item in value)
    return ""


def error_for_status(
    status: int, body: str, *, target: str, retry_after_seconds: float | None = None
) -> RuntimeFailure:
    """Classify a failed HTTP answer from a runtime (pure: status and body in, error out)."""
    said = f"{target} answered HTTP {status}: {runtime_message(body) or 'no details'}"
    if status == 429:
        return TransientError(
            f"{said}; the runtime is rate limiting, retry later",
            code=ErrorCode.RATE_LIMITED,
            retry_after_seconds=retry_after_seconds,
        )
    if _CONTEXT_RE.search(body):
        return PermanentError(
            f"{said}; shorten the prompt or lower max_tokens to fit the model's context",
            code=ErrorCode.CONTEXT_LENGTH_EXCEEDED,
        )
    if status == 404 or _MODEL_MISSING_RE.search(body):
        return PermanentError(
            f"{said}; check the job's model name and that the runtime has the model "
            "loaded or pulled (and that the runtime kind matches the server)",
            code=ErrorCode.MODEL_NOT_FOUND,
        )
    if status in (401, 403):
        return PermanentError(
            f"{said}; check the API key configured for the runtime", code=ErrorCode.UNAUTHORIZED
        )
    if status == 408 or status >= 500:
        return TransientError(
            f"{said}; the runtime is overloaded, restarting or unreachable, retry later",
            code=ErrorCode.RUNTIME_UNAVAILABLE,
            retry_after_seconds=retry_after_seconds,
        )
    if status < 400:
        return PermanentError(
            f"{said}; unexpected answer, check the runtime base URL", code=ErrorCode.RUNTIME_ERROR
        )
    return PermanentError(
        f"{said}; the runtime rejected the request, fix its parameters",
        code=ErrorCode.INVALID_REQUEST,
    )


def error_from_response(response: httpx.Response, target: str) -> RuntimeFailure:
    """Read a failed (possibly streaming) response and classify it."""
    response.read()
    return error_for_status(
        response.status_code,
        response.content.decode("utf-8", errors="replace"),
        target=target,
        retry_after_seconds=parse_retry_after(response.headers.get("retry-after")),
    )


def error_from_stream_message(body: str, target: str) -> RuntimeFailure:
    """Classify an error object the runtime sent inside a 200 stream."""
    said = f"{target} failed mid-stream: {runtime_message(body) or 'no details'}"
    if _CONTEXT_RE.search(body):
        return PermanentError(
            f"{said}; shorten the prompt or lower max_tokens to fit the model's context",
            code=ErrorCode.CONTEXT_LENGTH_EXCEEDED,
        )
    if _MODEL_MISSING_RE.search(body):
        return PermanentError(
            f"{said}; check the job's model name and that the runtime has the model",
            code=ErrorCode.MODEL_NOT_FOUND,
        )
    return TransientError(f"{said}; retry later", code=ErrorCode.RUNTIME_ERROR)


@contextlib.contextmanager
def transport_errors(target: str) -> Iterator[None]:
    """Turn httpx's connection, timeout and protocol exceptions into genq errors."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise TransientError(
            f"{target} timed out ({type(exc).__name__}); it may be overloaded, retry later",
            code=ErrorCode.RUNTIME_UNAVAILABLE,
        ) from exc
    except httpx.UnsupportedProtocol as exc:
        raise PermanentError(
            f"{target} is not an http:// or https:// URL; fix the runtime base URL",
            code=ErrorCode.RUNTIME_ERROR,
        ) from exc
    except httpx.RequestError as exc:
        raise TransientError(
            f"{target} is unreachable or dropped the connection ({type(exc).__name__}: "
            f"{runtime_message(str(exc))}); check that it is running, retry later",
            code=ErrorCode.RUNTIME_UNAVAILABLE,
        ) from exc


def json_object(text: str | bytes, target: str) -> dict[str, Any]:
    """Decode one JSON object the runtime sent, or fail with a hint about the runtime kind."""
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        excerpt = runtime_message(text if isinstance(text, str) else text.decode(errors="replace"))
        raise PermanentError(
            f"{target} sent something that is not a JSON object ({excerpt!r}); check that the "
            "runtime kind (openai or ollama) matches the server at this URL",
            code=ErrorCode.RUNTIME_ERROR,
        )
    return payload
