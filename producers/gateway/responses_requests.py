"""``POST /v1/responses`` bodies as genq chat jobs: text in, text out. Pure: no I/O.

The input (a string, or a list of text messages) and ``instructions`` become the job's
messages; ``max_output_tokens``, ``temperature`` and ``top_p`` its sampling parameters. What
genq cannot honour (tools, images and files, structured output, reasoning, conversation
objects) is a 400 naming the ``param``, as on the chat routes. A ``previous_response_id``
puts that response's messages and answer before the input (its instructions are not carried
over, as on OpenAI); the route looks it up and hands it in as ``Previous``.

The job carries one metadata key of genq's own (``responses_marks``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from producers.gateway.openai_requests import (
    FieldRules,
    UnsupportedParam,
    check_fields,
    flag,
    own_metadata,
)
from producers.gateway.responses_marks import MARKER, ResponseMarks
from schemas import InvalidRequest, JobKind, JobRequest
from schemas.jobs import METADATA_MAX_ENTRIES
from schemas.validation import parse

HONOURED = frozenset(
    {
        "model",
        "input",
        "instructions",
        "max_output_tokens",
        "temperature",
        "top_p",
        "metadata",
        "background",
        "stream",
        "store",
        "previous_response_id",
    }
)
# Sent by the SDK, no effect on a local runtime's answer.
IGNORED = frozenset(
    {
        "user",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "safety_identifier",
        "stream_options",
        "parallel_tool_calls",
        "max_tool_calls",
    }
)


def _falsy(value: Any) -> bool:
    return value is None or value is False or value == [] or value == {}


def _text_only(value: Any) -> bool:
    if value is None:
        return True
    if not isinstance(value, dict) or set(value) - {"format", "verbosity"}:
        return False
    fmt = value.get("format")
    return fmt is None or (isinstance(fmt, dict) and fmt.get("type") == "text")


# Field -> whether a value is one genq can honour (anything else is a 400 naming the field).
NEUTRAL: dict[str, Callable[[Any], bool]] = {
    "tools": _falsy,
    "tool_choice": lambda value: value in (None, "none", "auto"),
    "text": _text_only,
    "truncation": lambda value: value in (None, "disabled"),
    "reasoning": _falsy,
    "include": _falsy,
    "top_logprobs": lambda value: value in (None, 0),
    "conversation": _falsy,
    "prompt": _falsy,
    "context_management": _falsy,
}
WHY_NOT = {
    "tools": "tool calling is not supported through genq",
    "tool_choice": "tool calling is not supported through genq",
    "text": "structured output is not supported through genq; only text.format type 'text'",
    "truncation": "genq does not cut an input to fit; send 'disabled' or leave it out",
    "reasoning": "the runtimes genq drives have no reasoning settings",
    "include": "genq has nothing extra to include (no tools, no log probabilities)",
    "top_logprobs": "the runtimes genq drives do not return log probabilities",
    "conversation": "genq keeps no conversation objects; send the conversation as input, or "
    "continue a response with previous_response_id",
    "prompt": "genq has no stored prompt templates",
}
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
TEXT_PARTS = frozenset({"input_text", "output_text"})


@dataclass(frozen=True)
class Previous:
    """The response a request continues: its id, and the messages it hands on (its own
    context and input without its instructions, then its answer)."""

    response_id: str
    messages: list[dict[str, str]]


@dataclass(frozen=True)
class ResponseCall:
    """One ``POST /v1/responses`` as genq will run it."""

    job: JobRequest
    background: bool = False
    stream: bool = False


RULES = FieldRules(HONOURED, IGNORED, NEUTRAL, WHY_NOT, params={"text": "text.format"})


def _content_text(content: Any, where: str) -> str:
    """A message's content as text: a string, or text parts (joined); nothing else."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise UnsupportedParam(where, f"{where} must be a string or a list of text parts")
    texts = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in TEXT_PARTS or not isinstance(part.get("text"), str):
            raise UnsupportedParam(
                f"{where}[{index}]",
                f"{where}[{index}] is a {kind or 'malformed'} part; genq takes text only "
                "(input_text or output_text: no images, audio or files)",
            )
        texts.append(part["text"])
    return "\n".join(texts)


def _message(item: Any, where: str) -> dict[str, str]:
    if not isinstance(item, dict):
        raise UnsupportedParam(where, f"{where} must be a message object")
    kind = item.get("type", "message")
    if kind != "message":
        raise UnsupportedParam(
            where,
            f"{where} is a {kind!r} item; genq takes text messages only "
            "(no tool calls, tool outputs, reasoning or item references)",
        )
    role = ROLES.get(str(item.get("role")))
    if role is None:
        raise UnsupportedParam(
            f"{where}.role",
            f"{where}.role {item.get('role')!r} is not supported: genq takes system, "
            "developer, user and assistant messages",
        )
    return {"role": role, "content": _content_text(item.get("content"), f"{where}.content")}


def input_messages(raw: Any) -> list[dict[str, str]]:
    """``input`` as genq's ``{role, content}`` messages: a string is one user message."""
    if isinstance(raw, str):
        if not raw:
            raise UnsupportedParam("input", "input must not be empty", code="invalid_value")
        return [{"role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        raise UnsupportedParam("input", "input must be a string or a non-empty list of messages")
    return [_message(item, f"input[{index}]") for index, item in enumerate(raw)]


def _metadata(raw: Any, marks: ResponseMarks) -> dict[str, Any]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UnsupportedParam("metadata", "metadata must be an object of strings")
    own_metadata(raw)
    if len(raw) >= METADATA_MAX_ENTRIES:
        raise UnsupportedParam(
            "metadata",
            f"metadata takes at most {METADATA_MAX_ENTRIES - 1} keys on /v1/responses "
            f"(genq keeps one, {MARKER!r}, for itself)",
            code="invalid_value",
        )
    return {**raw, MARKER: marks.encode()}


def previous_response_id(body: dict[str, Any]) -> str | None:
    """The response this request continues, if it names one."""
    value = body.get("previous_response_id")
    if value is not None and not isinstance(value, str):
        raise UnsupportedParam("previous_response_id", "previous_response_id must be a string")
    return value or None


def response_call(
    body: dict[str, Any],
    priority: int,
    lane: str,
    key: str | None,
    previous: Previous | None = None,
) -> ResponseCall:
    """``POST /v1/responses`` as a chat job, or ``UnsupportedParam``/``InvalidRequest``."""
    check_fields(body, RULES)
    if previous_response_id(body) != (previous.response_id if previous else None):
        raise ValueError("look previous_response_id up and pass it in as previous")
    background = flag(body, "background")
    if background and body.get("store") is False:
        raise UnsupportedParam(
            "store", "a background response is stored: send store=true or leave it out"
        )
    messages = input_messages(body.get("input"))
    if previous is not None:
        messages = [*previous.messages, *messages]
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise UnsupportedParam("instructions", "instructions must be a string")
    if instructions:
        messages = [{"role": "system", "content": instructions}, *messages]
    marks = ResponseMarks(
        background=background,
        instructions=bool(instructions),
        previous=previous.response_id if previous else None,
        context=len(previous.messages) if previous else 0,
    )
    data: dict[str, Any] = {
        "kind": JobKind.CHAT.value,
        "model": body.get("model"),
        "messages": messages,
        "metadata": _metadata(body.get("metadata"), marks),
        "priority": priority,
        "lane": lane,
    }
    for name, field in (
        ("max_output_tokens", "max_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
    ):
        if body.get(name) is not None:
            data[field] = body[name]
    if key is not None:
        data["idempotency_key"] = key
    try:
        job = parse(JobRequest, data)
    except InvalidRequest as exc:
        _rename_fields(exc.details)
        raise
    return ResponseCall(job, background, flag(body, "stream"))


def _rename_fields(details: list[dict[str, Any]]) -> None:
    """genq's field names in validation details as the request's (``max_tokens`` was sent
    as ``max_output_tokens``, ``messages`` as ``input``)."""
    for detail in details:
        field = str(detail.get("field", ""))
        if field.startswith("max_tokens"):
            detail["field"] = "max_output_tokens"
        elif field.startswith("messages"):
            detail["field"] = "input"
