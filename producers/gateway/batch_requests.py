"""``POST /v1/batches`` as asked: its own fields checked (its lines are ``batch_lines``'s),
its priority resolved, or a 400 naming the ``param``. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from genq import constants as c
from genq.store.batches import StoredBatch
from producers.gateway.batch_lines import ENDPOINTS
from schemas import PRIORITY_MAX, PRIORITY_MIN, ErrorCode, InvalidRequest

COMPLETION_WINDOWS = ("24h",)
BATCH_PURPOSE = "batch"


def bad_param(param: str, message: str, code: str = "invalid_value") -> InvalidRequest:
    """A 400 naming ``param`` (OpenAI's ``param``) with OpenAI's ``code``."""
    return InvalidRequest(message, details=[{"field": param, "code": code}])


def batch_priority(header: str | None, metadata: dict[str, str] | None) -> int:
    """``X-Genq-Priority``, else ``metadata.genq_priority``, else 2: the lines' genq priority."""
    given = [
        ("X-Genq-Priority", header),
        ("metadata.genq_priority", (metadata or {}).get("genq_priority")),
    ]
    for param, value in given:
        if value is None or not value.strip():
            continue
        text = value.strip()
        if text.isascii() and text.isdigit() and PRIORITY_MIN <= int(text) <= PRIORITY_MAX:
            return int(text)
        raise bad_param(param, f"{param} must be a whole number 0-9 (9 most urgent), not {text!r}")
    return c.BATCH_DEFAULT_PRIORITY


class MissingFile(InvalidRequest):
    """A 404 that names the ``input_file_id`` it could not find (OpenAI's ``param``)."""

    code = ErrorCode.NOT_FOUND

    def __init__(self, file_id: str) -> None:
        super().__init__(
            f"No such file: {file_id}",
            details=[{"field": "input_file_id", "code": "file_not_found"}],
        )


@dataclass(frozen=True)
class NewBatch:
    """``POST /v1/batches``, checked."""

    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None
    priority: int
    idempotency_key: str | None = None

    def same_as(self, batch: StoredBatch) -> bool:
        """Whether ``batch`` was created by this very request (a retry of it)."""
        asked = (self.input_file_id, self.endpoint, self.metadata, self.priority)
        return asked == (batch.input_file_id, batch.endpoint, batch.metadata, batch.priority)


def check_new_batch(
    body: dict[str, Any], priority_header: str | None, idempotency_key: str | None = None
) -> NewBatch:
    """The request's own fields, or a 400 naming the bad one."""
    unknown = sorted(set(body) - {"input_file_id", "endpoint", "completion_window", "metadata"})
    if unknown:
        raise bad_param(
            unknown[0], f"Unrecognized request argument: {unknown[0]}", "unknown_parameter"
        )
    file_id = body.get("input_file_id")
    if not isinstance(file_id, str) or not file_id:
        raise bad_param("input_file_id", "input_file_id is required", "missing_required_parameter")
    endpoint = body.get("endpoint")
    if endpoint not in ENDPOINTS:
        raise bad_param("endpoint", f"endpoint must be one of {', '.join(ENDPOINTS)}")
    window = body.get("completion_window")
    if window not in COMPLETION_WINDOWS:
        raise bad_param("completion_window", "completion_window must be '24h'")
    metadata = body.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict)
        and len(metadata) <= 16
        and all(isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512
                for k, v in metadata.items())
    ):  # fmt: skip
        raise bad_param("metadata", "metadata is up to 16 string pairs (keys ≤ 64, values ≤ 512)")
    if idempotency_key is not None and not 0 < len(idempotency_key) <= 255:
        raise bad_param("Idempotency-Key", "Idempotency-Key must be 1-255 characters")
    priority = batch_priority(priority_header, metadata)
    return NewBatch(file_id, endpoint, window, metadata, priority, idempotency_key)
