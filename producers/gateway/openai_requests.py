"""OpenAI request bodies as genq jobs: what the SDK sends, checked and turned into a
``JobRequest``, or refused with the ``param`` genq cannot honour. Pure: no I/O.

A field is honoured (a generation parameter), safely ignored (``user``, ``store``,
``service_tier``…: they change nothing about the answer), accepted only at its neutral value
(``n: 1``, ``logprobs: false``, ``response_format: {"type": "text"}``…), or refused with 400.
A field this module does not know is refused too, as genq refuses unknown fields.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from producers.gateway.responses_marks import MARKER
from schemas import PRIORITY_MAX, PRIORITY_MIN, InvalidRequest, JobKind, JobRequest
from schemas.validation import parse

# Sent by the SDK, no effect on a local runtime's answer.
IGNORED = frozenset(
    {"user", "store", "service_tier", "prompt_cache_key", "safety_identifier", "stream_options"}
)
GENERATION = ("temperature", "top_p", "top_k", "stop", "seed", "presence_penalty")
SAMPLING = (*GENERATION, "frequency_penalty", "max_tokens")


def _is_none(value: Any) -> bool:
    return value is None


def _at_most_one(value: Any) -> bool:
    return value is None or value == 1


def _falsy(value: Any) -> bool:
    return value is None or value is False or value == [] or value == {}


def _text_format(value: Any) -> bool:
    return value is None or (isinstance(value, dict) and value.get("type") == "text")


def _no_tool_choice(value: Any) -> bool:
    return value is None or value == "none"


def _text_modality(value: Any) -> bool:
    return value is None or value == ["text"]


# Field -> whether a value is one genq can honour (anything else is a 400 naming the field).
NEUTRAL: dict[str, Callable[[Any], bool]] = {
    "n": _at_most_one,
    "best_of": _at_most_one,
    "logprobs": _falsy,
    "top_logprobs": _is_none,
    "echo": _falsy,
    "suffix": _is_none,
    "logit_bias": _falsy,
    "tools": _falsy,
    "functions": _falsy,
    "tool_choice": _no_tool_choice,
    "function_call": _no_tool_choice,
    "parallel_tool_calls": lambda value: True,  # meaningless without tools
    "response_format": _text_format,
    "modalities": _text_modality,
    "audio": _is_none,
    "prediction": _is_none,
    "web_search_options": _is_none,
    "reasoning_effort": _is_none,
    "verbosity": _is_none,
    "dimensions": _is_none,
}
WHY_NOT = {
    "n": "genq generates one choice per request; send n=1 (or several requests)",
    "best_of": "genq generates one choice per request; send best_of=1",
    "logprobs": "the runtimes genq drives do not return log probabilities",
    "top_logprobs": "the runtimes genq drives do not return log probabilities",
    "tools": "tool calling is not supported through genq",
    "functions": "function calling is not supported through genq",
    "tool_choice": "tool calling is not supported through genq",
    "function_call": "function calling is not supported through genq",
    "response_format": "structured output is not supported through genq; only type 'text'",
    "dimensions": "the embedding model's own dimensions are all genq can return",
}

CHAT_FIELDS = frozenset(
    {"model", "messages", "stream", "max_completion_tokens", "metadata", *SAMPLING}
)
COMPLETION_FIELDS = frozenset({"model", "prompt", "stream", *SAMPLING})
EMBEDDING_FIELDS = frozenset({"model", "input", "encoding_format"})
ENCODING_FORMATS = ("float", "base64")
CHAT_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class UnsupportedParam(InvalidRequest):
    """A request field genq cannot honour: a 400 naming it (OpenAI's ``param``)."""

    def __init__(self, param: str, message: str, code: str = "unsupported_parameter") -> None:
        super().__init__(message, details=[{"field": param, "code": code}])


def own_metadata(raw: Any) -> Any:
    """``metadata`` as sent, unless it holds genq's own key (``genq_response`` marks a job as
    a response: a chat job that carried it would pass for one)."""
    if isinstance(raw, dict) and MARKER in raw:
        raise UnsupportedParam(
            "metadata", f"metadata key {MARKER!r} is genq's own; use another key"
        )
    return raw


@dataclass(frozen=True)
class OpenAICall:
    """One OpenAI request as genq will run it."""

    job: JobRequest
    stream: bool = False
    include_usage: bool = False
    # Embeddings: the SDK asks for base64 unless told otherwise (and decodes it itself).
    base64: bool = False


def priority_from_header(value: str | None, default: int) -> int:
    """``X-Genq-Priority`` as a genq priority (0-9, 9 most urgent), ``default`` without it."""
    if value is None or not value.strip():
        return default
    text = value.strip()
    if text.isascii() and text.isdigit() and PRIORITY_MIN <= int(text) <= PRIORITY_MAX:
        return int(text)
    raise UnsupportedParam(
        "X-Genq-Priority",
        f"X-Genq-Priority must be a whole number {PRIORITY_MIN}-{PRIORITY_MAX} "
        f"(9 most urgent), not {text[:20]!r}",
        code="invalid_value",
    )


@dataclass(frozen=True)
class FieldRules:
    """What one route does with each request field: runs it (``honoured``), accepts and drops
    it (``ignored``), accepts it only at a value that changes nothing (``neutral``, with the
    reason in ``why_not``); any other field is unknown. ``params`` names the SDK's ``param``
    for a field whose error points inside it."""

    honoured: frozenset[str]
    ignored: frozenset[str] = IGNORED
    neutral: Mapping[str, Callable[[Any], bool]] = field(default_factory=lambda: NEUTRAL)
    why_not: Mapping[str, str] = field(default_factory=lambda: WHY_NOT)
    params: Mapping[str, str] = field(default_factory=dict)


def check_fields(body: dict[str, Any], rules: FieldRules) -> None:
    """Refuse a field genq cannot honour, or does not know, naming it."""
    for name, value in body.items():
        if name in rules.honoured or name in rules.ignored:
            continue
        neutral = rules.neutral.get(name)
        if neutral is None:
            raise UnsupportedParam(
                name, f"Unrecognized request argument supplied: {name}", code="unknown_parameter"
            )
        if not neutral(value):
            reason = rules.why_not.get(name, f"genq cannot honour {name} on this endpoint")
            param = rules.params.get(name, name)
            raise UnsupportedParam(param, f"{param}={value!r:.80} is not supported: {reason}")


def flag(body: dict[str, Any], name: str) -> bool:
    """``body[name]`` as a boolean (absent: False); anything but true or false is a 400."""
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise UnsupportedParam(name, f"{name} must be true or false", code="invalid_type")
    return value


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise UnsupportedParam("stream_options", "stream_options must be an object")
    return bool(options.get("include_usage"))


def _message_text(content: Any, where: str) -> str:
    """A message's content as text: a string, or text parts (joined); nothing else."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise UnsupportedParam(where, f"{where} must be a string or a list of text parts")
    texts = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text" or not isinstance(part.get("text"), str):
            raise UnsupportedParam(
                f"{where}[{index}]",
                f"{where}[{index}] is a {kind or 'malformed'} part; genq takes text only "
                "(no images, audio or files)",
            )
        texts.append(part["text"])
    return "\n".join(texts)


def chat_messages(raw: Any) -> list[dict[str, str]]:
    """OpenAI chat messages as genq's ``{role, content}``: text only, no tool turns."""
    if not isinstance(raw, list):
        raise UnsupportedParam("messages", "messages must be a list of messages")
    messages = []
    for index, message in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise UnsupportedParam(where, f"{where} must be an object")
        role = CHAT_ROLES.get(str(message.get("role")))
        if role is None:
            raise UnsupportedParam(
                f"{where}.role",
                f"{where}.role {message.get('role')!r} is not supported: genq takes system, "
                "developer, user and assistant messages (no tool calls)",
            )
        if message.get("tool_calls") or message.get("function_call") or message.get("audio"):
            raise UnsupportedParam(f"{where}.tool_calls", "tool calling is not supported")
        text = _message_text(message.get("content"), f"{where}.content")
        messages.append({"role": role, "content": text})
    return messages


def _sampling(body: dict[str, Any]) -> dict[str, Any]:
    return {name: body[name] for name in SAMPLING if body.get(name) is not None}


def _job(data: dict[str, Any], priority: int, lane: str, key: str | None) -> JobRequest:
    data = {**data, "priority": priority, "lane": lane}
    if key is not None:
        data["idempotency_key"] = key
    return parse(JobRequest, data)


def chat_call(body: dict[str, Any], priority: int, lane: str, key: str | None) -> OpenAICall:
    """``POST /v1/chat/completions`` as a chat job."""
    check_fields(body, FieldRules(CHAT_FIELDS))
    data: dict[str, Any] = {
        "kind": JobKind.CHAT.value,
        "model": body.get("model"),
        "messages": chat_messages(body.get("messages")),
        **_sampling(body),
    }
    if body.get("max_completion_tokens") is not None:
        data["max_tokens"] = body["max_completion_tokens"]
    if body.get("metadata") is not None:
        data["metadata"] = own_metadata(body["metadata"])
    stream = flag(body, "stream")
    return OpenAICall(_job(data, priority, lane, key), stream, stream and _include_usage(body))


def completion_prompt(raw: Any) -> str:
    """One prompt: a string, or a list holding one string."""
    if isinstance(raw, list) and len(raw) == 1:
        raw = raw[0]
    if not isinstance(raw, str):
        raise UnsupportedParam(
            "prompt",
            "prompt must be one string: genq runs one prompt per request (no token arrays, "
            "no lists of prompts)",
        )
    return raw


def completion_call(body: dict[str, Any], priority: int, lane: str, key: str | None) -> OpenAICall:
    """``POST /v1/completions`` as a completion job."""
    check_fields(body, FieldRules(COMPLETION_FIELDS))
    data: dict[str, Any] = {
        "kind": JobKind.COMPLETION.value,
        "model": body.get("model"),
        "prompt": completion_prompt(body.get("prompt")),
        **_sampling(body),
    }
    stream = flag(body, "stream")
    return OpenAICall(_job(data, priority, lane, key), stream, stream and _include_usage(body))


def embedding_call(body: dict[str, Any], priority: int, lane: str, key: str | None) -> OpenAICall:
    """``POST /v1/embeddings`` as an embedding job."""
    check_fields(body, FieldRules(EMBEDDING_FIELDS))
    raw = body.get("input")
    if not (
        isinstance(raw, str) or (isinstance(raw, list) and all(isinstance(x, str) for x in raw))
    ):
        raise UnsupportedParam(
            "input", "input must be a string or a list of strings (no token arrays)"
        )
    encoding = body.get("encoding_format") or "float"
    if encoding not in ENCODING_FORMATS:
        raise UnsupportedParam(
            "encoding_format", "encoding_format must be 'float' or 'base64'", code="invalid_value"
        )
    data = {"kind": JobKind.EMBEDDING.value, "model": body.get("model"), "input": raw}
    return OpenAICall(_job(data, priority, lane, key), base64=encoding == "base64")


def param_of(error: InvalidRequest) -> str | None:
    """The request field an ``InvalidRequest`` is about (OpenAI's ``param``), if it names one."""
    for detail in error.details:
        field = detail.get("field")
        if isinstance(field, str) and field != "body":
            return field
    return None
