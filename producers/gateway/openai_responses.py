"""genq's job records and chunks in OpenAI's response shapes, and genq's errors in OpenAI's
error shape. Pure: no I/O.

A completion's id is the job's id with OpenAI's prefix (``chatcmpl-<job id>``), so an answer
leads back to its job (``GET /v1/jobs/<job id>``).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterable
from typing import Any

from schemas import ErrorCode, GenqError, JobKind, JobRecord, JobStatus, Usage

OWNED_BY = "genq"
FINISH_REASONS = frozenset({"stop", "length", "content_filter"})
ID_PREFIX = {JobKind.CHAT: "chatcmpl-", JobKind.COMPLETION: "cmpl-"}
OBJECT = {JobKind.CHAT: "chat.completion.chunk", JobKind.COMPLETION: "text_completion"}

# HTTP status -> OpenAI's error ``type`` (the SDK picks its exception class by status alone).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}
# genq's code -> OpenAI's, where OpenAI has its own word for the same thing.
OPENAI_CODES = {
    ErrorCode.UNAUTHORIZED: "invalid_api_key",
    ErrorCode.RATE_LIMITED: "rate_limit_exceeded",
}
# How a job that did not succeed reads over HTTP (by its error code, else by its status).
OUTCOME_STATUS = {
    ErrorCode.INVALID_REQUEST.value: 400,
    ErrorCode.CONTEXT_LENGTH_EXCEEDED.value: 400,
    ErrorCode.MODEL_NOT_FOUND.value: 404,
    ErrorCode.RUNTIME_UNAVAILABLE.value: 503,
}
STATUS_OF_STATE = {JobStatus.CANCELLED: 409, JobStatus.EXPIRED: 504}


def completion_id(record: JobRecord) -> str:
    return ID_PREFIX.get(record.kind, "") + record.id


def created(record: JobRecord) -> int:
    return int(record.created_at.timestamp())


def finish_reason(reason: str | None) -> str:
    """The runtime's reason as one the SDK knows; anything else ended the text normally."""
    return reason if reason in FINISH_REASONS else "stop"


def usage_body(usage: Usage | None) -> dict[str, int]:
    usage = usage or Usage()
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
    }


def usage_from_chunk(data: dict[str, Any] | None) -> Usage | None:
    raw = (data or {}).get("usage")
    return Usage.model_validate(raw) if isinstance(raw, dict) else None


def chat_completion(record: JobRecord) -> dict[str, Any]:
    """A succeeded chat job as ``chat.completion``."""
    result = record.result
    message = {"role": "assistant", "content": result.text if result else "", "refusal": None}
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": finish_reason(result.finish_reason if result else None),
    }
    return {
        "id": completion_id(record),
        "object": "chat.completion",
        "created": created(record),
        "model": record.model,
        "choices": [choice],
        "usage": usage_body(record.usage),
        "system_fingerprint": None,
    }


def text_completion(record: JobRecord) -> dict[str, Any]:
    """A succeeded completion job as ``text_completion``."""
    result = record.result
    choice = {
        "index": 0,
        "text": result.text if result else "",
        "logprobs": None,
        "finish_reason": finish_reason(result.finish_reason if result else None),
    }
    return {
        "id": completion_id(record),
        "object": "text_completion",
        "created": created(record),
        "model": record.model,
        "choices": [choice],
        "usage": usage_body(record.usage),
        "system_fingerprint": None,
    }


def encode_vector(vector: list[float]) -> str:
    """A vector as OpenAI's base64 encoding: little-endian float32s."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embedding_list(record: JobRecord, *, as_base64: bool = False) -> dict[str, Any]:
    """A succeeded embedding job as OpenAI's ``list`` of ``embedding`` objects."""
    vectors = (record.result.embeddings if record.result else None) or []
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": encode_vector(vector) if as_base64 else vector,
        }
        for index, vector in enumerate(vectors)
    ]
    usage = record.usage or Usage()
    tokens = {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens}
    return {"object": "list", "data": data, "model": record.model, "usage": tokens}


def response_body(record: JobRecord, *, as_base64: bool = False) -> dict[str, Any]:
    """The non-streamed answer for a succeeded job of any kind."""
    if record.kind is JobKind.CHAT:
        return chat_completion(record)
    if record.kind is JobKind.COMPLETION:
        return text_completion(record)
    return embedding_list(record, as_base64=as_base64)


def model_list(names: Iterable[str], created_at: int) -> dict[str, Any]:
    """``GET /v1/models``: each name once, in order."""
    unique = list(dict.fromkeys(names))
    data = [
        {"id": name, "object": "model", "created": created_at, "owned_by": OWNED_BY}
        for name in unique
    ]
    return {"object": "list", "data": data}


class ChunkShapes:
    """The ``chat.completion.chunk`` (or streamed ``text_completion``) events of one job."""

    def __init__(self, record: JobRecord, *, include_usage: bool) -> None:
        self.chat = record.kind is JobKind.CHAT
        self.include_usage = include_usage
        self.head = {
            "id": completion_id(record),
            "object": OBJECT[record.kind],
            "created": created(record),
            "model": record.model,
            "system_fingerprint": None,
        }

    def _event(self, choices: list[dict[str, Any]], usage: Usage | None = None) -> dict[str, Any]:
        event = {**self.head, "choices": choices}
        if self.include_usage:
            event["usage"] = usage_body(usage) if usage is not None else None
        return event

    def _choice(self, text: str | None, reason: str | None, role: bool = False) -> dict[str, Any]:
        if not self.chat:
            return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": reason}
        delta: dict[str, Any] = {"content": text} if text is not None else {}
        if role:
            delta["role"] = "assistant"
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}

    def opening(self) -> dict[str, Any] | None:
        """A chat stream opens with the assistant's role (and no text yet)."""
        return self._event([self._choice("", None, role=True)]) if self.chat else None

    def delta(self, text: str) -> dict[str, Any]:
        return self._event([self._choice(text, None)])

    def finish(self, reason: str | None) -> dict[str, Any]:
        return self._event([self._choice(None if self.chat else "", finish_reason(reason))])

    def usage(self, usage: Usage | None) -> dict[str, Any] | None:
        """The last chunk, with no choices, when ``stream_options.include_usage`` asked."""
        if not self.include_usage:
            return None
        return self._event([], usage or Usage())


def outcome_error(record: JobRecord) -> GenqError | None:
    """Why a terminal job has no answer to give, as an error; None if it succeeded."""
    if record.status is JobStatus.SUCCEEDED:
        return None
    info = record.error
    code = str(info.code) if info else record.status.value
    message = info.message if info else f"the job ended {record.status.value}"
    error = GenqError(f"genq job {record.id} {record.status.value}: {message}")
    error.code = ErrorCode(code) if code in ErrorCode._value2member_map_ else ErrorCode.INTERNAL
    error.details = [{"job_id": record.id, "status": record.status.value, "code": code}]
    return error


def outcome_status(record: JobRecord) -> int:
    """The HTTP status for a terminal job that did not succeed."""
    code = str(record.error.code) if record.error else ""
    return OUTCOME_STATUS.get(code) or STATUS_OF_STATE.get(record.status, 500)


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def openai_error(
    error: GenqError, status: int, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}`` for ``error`` answered ``status``."""
    detail_code = next(
        (d["code"] for d in error.details if isinstance(d.get("code"), str) and "field" in d),
        None,
    )
    return {
        "error": {
            "message": error.message,
            "type": error_type(status),
            "param": param,
            "code": code or detail_code or OPENAI_CODES.get(error.code, error.code.value),
        }
    }
