"""A batch input file's lines, checked one by one: each is ``{"custom_id", "method", "url",
"body"}``, and its body must pass the same checks as the OpenAI route it names. Pure: no I/O.

A bad line is reported as OpenAI reports it, ``{"code", "line", "message", "param"}``, and any
bad line fails the whole batch before a job exists. What the request itself gets wrong (an
empty file, too many lines) is a 400 instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from producers.gateway.openai_requests import (
    OpenAICall,
    chat_call,
    completion_call,
    embedding_call,
    param_of,
)
from schemas import InvalidRequest, JobRequest

CallBuilder = Callable[[dict[str, Any], int, str, str | None], OpenAICall]
ENDPOINTS: dict[str, CallBuilder] = {
    "/v1/chat/completions": chat_call,
    "/v1/completions": completion_call,
    "/v1/embeddings": embedding_call,
}
CUSTOM_ID_MAX_CHARS = 512
# A failed batch reports at most this many bad lines (OpenAI's ``errors.data``).
MAX_REPORTED_ERRORS = 1000


@dataclass(frozen=True)
class LineError:
    """One bad line, as OpenAI's ``errors.data`` lists it."""

    code: str
    line: int
    message: str
    param: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "line": self.line, "message": self.message, "param": self.param}


@dataclass(frozen=True)
class BatchRequest:
    """A good line: its ``custom_id`` and the genq job that answers it."""

    line: int
    custom_id: str
    job: JobRequest


def parse_line(
    raw: bytes,
    number: int,
    *,
    endpoint: str,
    priority: int,
    lane: str,
    deadline: datetime | None = None,
    batch_id: str | None = None,
) -> BatchRequest | LineError:
    """Line ``number`` of a batch for ``endpoint`` as a job, or why it cannot be one."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        return LineError("invalid_json_line", number, f"This line is not valid JSON: {reason}")
    if not isinstance(data, dict):
        return LineError("invalid_json_line", number, "This line must be a JSON object")
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return LineError(
            "missing_required_parameter",
            number,
            "Each line needs a custom_id: a non-empty string naming the request",
            "custom_id",
        )
    if len(custom_id) > CUSTOM_ID_MAX_CHARS:
        return LineError(
            "invalid_value",
            number,
            f"custom_id is longer than {CUSTOM_ID_MAX_CHARS} characters",
            "custom_id",
        )
    unknown = sorted(set(data) - {"custom_id", "method", "url", "body"})
    if unknown:
        return LineError("unknown_parameter", number, f"Unknown field {unknown[0]!r}", unknown[0])
    if data.get("method", "POST") != "POST":
        return LineError("invalid_value", number, "method must be POST", "method")
    if data.get("url") != endpoint:
        return LineError(
            "mismatched_endpoint",
            number,
            f"The url {data.get('url')!r} differs from the batch's endpoint {endpoint!r}; "
            "a batch runs one endpoint",
            "url",
        )
    body = data.get("body")
    if not isinstance(body, dict):
        return LineError("invalid_value", number, "body must be a JSON object", "body")
    return _as_job(body, number, endpoint, priority, lane, deadline, batch_id, custom_id)


def _as_job(
    body: dict[str, Any],
    number: int,
    endpoint: str,
    priority: int,
    lane: str,
    deadline: datetime | None,
    batch_id: str | None,
    custom_id: str,
) -> BatchRequest | LineError:
    if body.get("stream"):
        return LineError(
            "invalid_value", number, "A batch line cannot stream: drop stream", "body.stream"
        )
    try:
        call = ENDPOINTS[endpoint](body, priority, lane, None)
    except InvalidRequest as exc:
        param = param_of(exc)
        return LineError(_code_of(exc), number, exc.message, f"body.{param}" if param else "body")
    update: dict[str, Any] = {"deadline": deadline}
    if batch_id is not None and len(call.job.metadata) < 16:
        update["metadata"] = {**call.job.metadata, "genq_batch_id": batch_id}
    return BatchRequest(number, custom_id, call.job.model_copy(update=update))


def _code_of(error: InvalidRequest) -> str:
    for detail in error.details:
        code = detail.get("code")
        if isinstance(code, str):
            return code
    return "invalid_request"


@dataclass
class LineCheck:
    """The first pass over a batch file: every line checked, nothing kept but what the
    verdict needs (the ``custom_id``s seen, the models named, the first errors)."""

    endpoint: str
    max_lines: int
    lines: int = 0
    error_count: int = 0
    errors: list[LineError] = field(default_factory=list)
    # Each model the lines name, with the first line naming it.
    models: dict[str | None, int] = field(default_factory=dict)
    _seen: set[str] = field(default_factory=set)

    @property
    def too_many(self) -> bool:
        return self.lines > self.max_lines

    def add(self, raw: bytes, number: int) -> None:
        """Check one line (blank lines are skipped, as OpenAI does)."""
        if not raw.strip():
            return
        self.lines += 1
        checked = parse_line(raw, number, endpoint=self.endpoint, priority=0, lane="batch")
        if isinstance(checked, LineError):
            self._error(checked)
            return
        if checked.custom_id in self._seen:
            self._error(
                LineError(
                    "duplicate_custom_id",
                    number,
                    f"The custom_id {checked.custom_id!r} is used by an earlier line; "
                    "each line needs its own",
                    "custom_id",
                )
            )
            return
        self._seen.add(checked.custom_id)
        self.models.setdefault(checked.job.model, number)

    def unknown_model(self, model: str) -> None:
        self._error(
            LineError(
                "model_not_found",
                self.models[model],
                f"The model `{model}` does not exist: this genq stack serves the models "
                "GET /v1/models lists",
                "body.model",
            )
        )

    def _error(self, error: LineError) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(error)
