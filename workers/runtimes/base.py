"""The one runtime interface, and how runtime failures become genq errors.

Every adapter streams a generation, embeds, and reports health over an ``httpx.Client`` built
outside (base URL, API key, timeouts). Whatever goes wrong on the wire leaves an adapter as
``TransientError`` (retry later) or ``PermanentError`` (retrying cannot help), never as an httpx
exception, and its message names the runtime and says what to do, without any secret.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx

from schemas import ErrorCode, JobRequest, PermanentError, TransientError, Usage

RuntimeFailure = TransientError | PermanentError

_CONTEXT_RE = re.compile(r"context[ _](length|window|size)|exceed_context|maximum context", re.I)
_MODEL_MISSING_RE = re.compile(
    r"model\b[^.]{0,160}?(not found|does not exist)|model_not_found", re.I
)
_SECRET_RE = re.compile(
    r"(bearer\s+)\S+|\bsk-[A-Za-z0-9_-]{8,}|(api[_-]?key[\"'=:\s]+)[^\s\"',]+", re.I
)
_EXCERPT_CHARS = 300
# After the final event only the end of the body is left; a server still talking is cut off.
DRAIN_MAX_LINES = 16


@dataclass(frozen=True)
class StreamEvent:
    """One piece of a streamed generation; the last one carries ``finish_reason``."""

    delta: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


@dataclass(frozen=True)
class Embeddings:
    """One vector per input, in input order, and the tokens the runtime counted."""

    vectors: list[list[float]]
    usage: Usage


@dataclass(frozen=True)
class RuntimeHealth:
    """Whether the runtime answers, and a line a person can read."""

    ok: bool
    detail: str


class Runtime(Protocol):
    """What a worker needs from an LLM runtime."""

    def stream(self, request: JobRequest, model: str) -> Iterator[StreamEvent]:
        """Stream a chat or completion; closing the iterator closes the HTTP response."""
        ...

    def embed(self, inputs: list[str], model: str) -> Embeddings:
        """Embed each input into one vector."""
        ...

    def health(self) -> RuntimeHealth:
        """Probe the runtime without raising."""
        ...


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


def dropped_stream(target: str, chunks: int) -> TransientError:
    """The stream ended before the runtime said it was finished."""
    return TransientError(
        f"{target} closed the stream after {chunks} chunks without finishing "
        "(the runtime crashed, restarted or dropped the connection); retry later",
        code=ErrorCode.RUNTIME_UNAVAILABLE,
    )


@contextlib.contextmanager
def streamed_lines(
    client: httpx.Client, runtime: str, path: str, body: dict[str, Any]
) -> Iterator[tuple[Iterator[str], str]]:
    """POST ``body`` and hand over the response's lines (and the target, for messages).

    Leaving the block closes the response, which is what makes a runtime stop generating.
    Leaving it normally (the stream was read to its end) first reads what is left of the body,
    the chunked encoding's last chunk, so the connection goes back to the pool for the next
    job instead of being closed and opened again.
    """
    target = describe_target(client, runtime, path)
    with transport_errors(target), client.stream("POST", path, json=body) as response:
        if not response.is_success:
            raise error_from_response(response, target)
        lines = response.iter_lines()
        yield lines, target
        with contextlib.suppress(httpx.HTTPError):  # the result is complete either way
            for _ in itertools.islice(lines, DRAIN_MAX_LINES):
                pass


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


def check_health(
    client: httpx.Client, runtime: str, path: str, summarize: Callable[[dict[str, Any]], str]
) -> RuntimeHealth:
    """GET ``path``; healthy on 200, with ``summarize(body)`` as the detail. Never raises."""
    target = describe_target(client, runtime, path)
    try:
        with transport_errors(target):
            response = client.get(path)
        if response.status_code != 200:
            return RuntimeHealth(ok=False, detail=error_from_response(response, target).message)
        summary = summarize(json_object(response.content, target))
        return RuntimeHealth(ok=True, detail=f"{target}: {summary}")
    except (TransientError, PermanentError) as exc:
        return RuntimeHealth(ok=False, detail=exc.message)
