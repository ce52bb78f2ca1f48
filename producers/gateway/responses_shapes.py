"""A response job's record as OpenAI's ``Response`` object and its input items. Pure.

A response's id is its job's id with OpenAI's prefix (``resp_<job id as 32 hex digits>``);
its one output message is ``msg_<the same>``. The text comes back as one ``message`` with one
``output_text`` part (the SDK's ``output_text`` joins them client side).

Status: queued -> ``queued``; running -> ``in_progress``; succeeded -> ``completed``, or
``incomplete`` (reason ``max_output_tokens``) when the runtime stopped at the token limit;
cancelled -> ``cancelled`` (with the text so far, if any); failed, expired, dead-lettered ->
``failed`` with an ``error``.
"""

from __future__ import annotations

import uuid
from typing import Any

from producers.gateway.responses_marks import ResponseMarks, marks_of, user_metadata
from schemas import ErrorCode, InvalidRequest, JobRecord
from schemas.responses import (
    CANCELLED,
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    INCOMPLETE,
    QUEUED,
    RESPONSE_PREFIX,
    response_id,
    response_status,
)

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "FAILED",
    "INCOMPLETE",
    "IN_PROGRESS",
    "QUEUED",
    "response_id",
    "response_status",
]

MESSAGE_PREFIX = "msg_"

# genq's error code -> the closest of the SDK's ``ResponseError`` codes.
ERROR_CODES = {
    ErrorCode.RATE_LIMITED.value: "rate_limit_exceeded",
    ErrorCode.INVALID_REQUEST.value: "invalid_prompt",
    ErrorCode.CONTEXT_LENGTH_EXCEEDED.value: "invalid_prompt",
}


def job_id_of(ident: str) -> str | None:
    """The job id behind a response id, or None if ``ident`` is not one this API gave out."""
    if not ident.startswith(RESPONSE_PREFIX):
        return None
    digits = ident[len(RESPONSE_PREFIX) :]
    if len(digits) != 32:
        return None
    try:
        return str(uuid.UUID(hex=digits))
    except ValueError:
        return None


def message_id(record: JobRecord) -> str:
    return MESSAGE_PREFIX + uuid.UUID(record.id).hex


def is_response(record: JobRecord) -> bool:
    """Whether ``record`` is a job ``POST /v1/responses`` created."""
    return marks_of(record.metadata) is not None


def output_text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def output_message(record: JobRecord, text: str | None, status: str) -> dict[str, Any]:
    """The response's one output item; ``text`` None for a message just opened."""
    content = [] if text is None else [output_text_part(text)]
    return {
        "id": message_id(record),
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def _output(record: JobRecord, status: str) -> list[dict[str, Any]]:
    text = record.result.text if record.result else None
    if status == COMPLETED:
        return [output_message(record, text or "", COMPLETED)]
    if status == INCOMPLETE or (status == CANCELLED and text):
        return [output_message(record, text or "", INCOMPLETE)]
    return []


def usage_body(record: JobRecord) -> dict[str, Any] | None:
    usage = record.usage
    if usage is None:
        return None
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
    }


def error_body(record: JobRecord) -> dict[str, str]:
    info = record.error
    code = str(info.code) if info else record.status.value
    message = info.message if info else f"the job ended {record.status.value}"
    return {
        "code": ERROR_CODES.get(code, "server_error"),
        "message": f"genq job {record.id} {record.status.value} ({code}): {message}",
    }


def _marks(record: JobRecord) -> ResponseMarks:
    return marks_of(record.metadata) or ResponseMarks()


def _messages(record: JobRecord) -> list[dict[str, Any]]:
    messages = record.request.get("messages")
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def _instructions(record: JobRecord) -> str | None:
    messages = _messages(record)
    if not _marks(record).instructions or not messages:
        return None
    return str(messages[0].get("content", ""))


def handed_on(record: JobRecord) -> list[dict[str, str]]:
    """What a response hands on to one that continues it (``previous_response_id``): its
    messages without its instructions (its own context and input), then its answer."""
    first = 1 if _marks(record).instructions else 0
    messages = [
        {"role": str(m.get("role")), "content": str(m.get("content", ""))}
        for m in _messages(record)[first:]
    ]
    text = record.result.text if record.result else None
    return [*messages, {"role": "assistant", "content": text or ""}]


def _seconds(record: JobRecord, name: str) -> int | None:
    stamp = getattr(record, name)
    return int(stamp.timestamp()) if stamp is not None else None


def response_object(
    record: JobRecord, status: str | None = None, text_so_far: str | None = None
) -> dict[str, Any]:
    """``record`` as a ``Response``; ``status`` shows it as it stood at an earlier event
    (queued or in progress: no output, usage or error yet). ``text_so_far``: the text of a
    response in progress, as its output message (``in_progress``) until it finishes."""
    marks = _marks(record)
    actual = response_status(record)
    shown = status or actual
    early = shown in (QUEUED, IN_PROGRESS)
    partial = shown == IN_PROGRESS and bool(text_so_far)
    request = record.request
    return {
        "id": response_id(record.id),
        "object": "response",
        "created_at": _seconds(record, "created_at"),
        "status": shown,
        "background": marks.background,
        "model": record.model,
        "instructions": _instructions(record),
        "output": (
            [output_message(record, text_so_far, IN_PROGRESS)]
            if partial
            else []
            if early
            else _output(record, shown)
        ),
        "error": error_body(record) if shown == FAILED else None,
        "incomplete_details": {"reason": "max_output_tokens"} if shown == INCOMPLETE else None,
        "usage": None if early else usage_body(record),
        "metadata": user_metadata(record.metadata),
        "max_output_tokens": request.get("max_tokens"),
        "temperature": request.get("temperature"),
        "top_p": request.get("top_p"),
        "completed_at": _seconds(record, "finished_at") if shown == COMPLETED else None,
        "parallel_tool_calls": False,
        "tool_choice": "none",
        "tools": [],
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "previous_response_id": marks.previous,
        "reasoning": None,
        "store": True,
        "user": None,
    }


def deleted_body(ident: str) -> dict[str, Any]:
    return {"id": ident, "object": "response", "deleted": True}


def input_items(record: JobRecord) -> list[dict[str, Any]]:
    """The response's own input as items, first to last, each with an id of its own: not
    its instructions (the ``Response``'s own field), nor what a previous response handed on."""
    marks = _marks(record)
    first = (1 if marks.instructions else 0) + marks.context
    base = uuid.UUID(record.id).hex
    items = []
    for index, message in enumerate(_messages(record)[first:]):
        role, text = str(message.get("role")), str(message.get("content", ""))
        part = (
            output_text_part(text) if role == "assistant" else {"type": "input_text", "text": text}
        )
        items.append(
            {
                "id": f"{MESSAGE_PREFIX}{base}_in{index}",
                "type": "message",
                "role": role,
                "status": COMPLETED,
                "content": [part],
            }
        )
    return items


def item_page(
    items: list[dict[str, Any]], *, after: str | None, limit: int, ascending: bool
) -> dict[str, Any]:
    """One page of ``items`` in OpenAI's list shape, after the item ``after`` (its id)."""
    ordered = items if ascending else items[::-1]
    ids = [item["id"] for item in ordered]
    if after is not None and after not in ids:
        raise InvalidRequest(
            f"after={after[:80]!r} is not an input item of this response",
            details=[{"field": "after", "code": "invalid_value"}],
        )
    start = ids.index(after) + 1 if after is not None else 0
    data = ordered[start : start + limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": start + limit < len(ordered),
    }
