"""Checking what a client sent before anything acts on it: body, ids, cursors, deadlines.

Each check raises a ``GenqError`` with a stable code and a message saying what to send instead.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC
from typing import Any

from genq.store.jobs import decode_cursor
from producers.gateway.errors import UnsupportedMediaType
from schemas import InvalidRequest, JobRequest
from schemas.validation import parse

JSON_MEDIA_TYPES = ("application/json",)


def is_json_media_type(content_type: str | None) -> bool:
    """``application/json`` (any parameters) or a ``+json`` structured syntax suffix."""
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type in JSON_MEDIA_TYPES or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def json_object(content_type: str | None, body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or 415 / 400 saying what is wrong with it."""
    if not is_json_media_type(content_type):
        raise UnsupportedMediaType(
            f"send the job as JSON with 'Content-Type: application/json' "
            f"(got {content_type or 'no Content-Type'})"
        )
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            details=[{"field": "body", "message": exc.msg, "position": exc.pos}],
        ) from exc
    except (UnicodeDecodeError, RecursionError) as exc:
        raise InvalidRequest(
            "request body is not valid JSON (bad encoding or nested too deeply); send UTF-8 JSON",
            details=[{"field": "body", "message": exc.__class__.__name__}],
        ) from exc
    if not isinstance(data, dict):
        raise InvalidRequest(
            f"request body must be a JSON object, not a JSON {type(data).__name__}",
            details=[{"field": "body", "message": "expected an object"}],
        )
    return data


def with_idempotency_key(data: dict[str, Any], header: str | None) -> dict[str, Any]:
    """Put the ``Idempotency-Key`` header into the body; both given and different is a 400."""
    if header is None:
        return data
    in_body = data.get("idempotency_key")
    if in_body is not None and in_body != header:
        raise InvalidRequest(
            "the Idempotency-Key header and the body's idempotency_key differ; send one of them",
            details=[{"field": "idempotency_key", "message": "differs from Idempotency-Key"}],
        )
    return {**data, "idempotency_key": header}


def job_request(content_type: str | None, body: bytes, idempotency_key: str | None) -> JobRequest:
    """Everything a submission must pass before the store sees it."""
    data = with_idempotency_key(json_object(content_type, body), idempotency_key)
    request = parse(JobRequest, data)
    if request.deadline is not None:
        try:
            request.deadline.astimezone(UTC)
        except (OverflowError, ValueError) as exc:
            raise InvalidRequest(
                "deadline is outside the representable range; give a nearer time",
                details=[{"field": "deadline", "message": "out of range"}],
            ) from exc
    return request


def job_id(value: str) -> str:
    """The canonical form of a job id, or 400 if it is not a UUID."""
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise InvalidRequest(
            f"{value[:64]!r} is not a job id; job ids are UUIDs like "
            "'3f2b8c1e-0a4d-4e5f-9b6a-7c8d9e0f1a2b'",
            details=[{"field": "job_id", "in": "path", "message": "not a UUID"}],
        ) from exc


def cursor(value: str | None) -> str | None:
    """A cursor this API handed out, or 400 (checked before the store sees it)."""
    if value is None:
        return None
    at, _job_id = decode_cursor(value)
    try:
        if at.tzinfo is None:
            raise ValueError("naive")
        at.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise InvalidRequest("cursor is not one this API returned; start without it") from exc
    return value
