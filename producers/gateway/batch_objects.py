"""Files and batches in OpenAI's object shapes (``file``, ``batch``, their lists). Pure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from genq.store.batches import LineCounts, StoredBatch
from genq.store.files import StoredFile

TIMESTAMPS = (
    "created_at",
    "in_progress_at",
    "expires_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
)


def unix(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


def file_object(stored: StoredFile) -> dict[str, Any]:
    """OpenAI's ``file`` object."""
    return {
        "id": stored.id,
        "object": "file",
        "bytes": stored.bytes,
        "created_at": unix(stored.created_at),
        "expires_at": None,
        "filename": stored.filename,
        "purpose": stored.purpose,
        "status": stored.status,
        "status_details": None,
    }


def batch_object(batch: StoredBatch, counts: LineCounts | None = None) -> dict[str, Any]:
    """OpenAI's ``batch`` object; ``counts`` are its lines' while it runs (a finished batch
    shows the counts it finished with)."""
    if counts is None:
        counts = LineCounts(total=batch.total, completed=batch.completed, failed=batch.failed)
    errors = None
    if batch.errors:
        errors = {"object": "list", "data": batch.errors}
    body: dict[str, Any] = {
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.endpoint,
        "errors": errors,
        "input_file_id": batch.input_file_id,
        "completion_window": batch.completion_window,
        "status": batch.status,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "request_counts": {
            "total": counts.total,
            "completed": counts.completed,
            "failed": counts.failed,
        },
        "metadata": batch.metadata,
    }
    body.update({name: unix(getattr(batch, name)) for name in TIMESTAMPS})
    return body


def list_object(data: list[dict[str, Any]], *, has_more: bool) -> dict[str, Any]:
    """OpenAI's cursor page: ``{"object": "list", "data", "first_id", "last_id", "has_more"}``."""
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }
