"""A finished batch line in OpenAI's output format: ``{"id", "custom_id", "response":
{"status_code", "request_id", "body"}, "error"}``. Pure: no I/O.

A line whose job succeeded goes to the output file with the body the OpenAI route would have
answered; a line whose job failed goes to the error file with the error body and status that
route would have answered; a line that never ran to an end because its batch was cancelled or
expired goes to the error file with ``error {"code": "batch_cancelled" | "batch_expired"}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from producers.gateway.openai_responses import (
    openai_error,
    outcome_error,
    outcome_status,
    response_body,
)
from schemas import JobRecord, JobStatus

# The job states a line reaches when its batch stopped it (rather than its own failure).
STOPPED = frozenset({JobStatus.CANCELLED, JobStatus.EXPIRED})
STOPPED_BY = {
    "cancelled": ("batch_cancelled", "The batch was cancelled before this request finished"),
    "expired": ("batch_expired", "The batch's completion window ended before this request ran"),
}


@dataclass(frozen=True)
class OutputLine:
    """One line of the output (``ok``) or the error file, as JSON text with its newline."""

    ok: bool
    text: bytes


def output_line(custom_id: str, job_id: str, record: JobRecord | None, ends_as: str) -> OutputLine:
    """The answer for one input line whose job is terminal (or purged: ``record`` None)."""
    head = {"id": f"batch_req_{job_id.replace('-', '')}", "custom_id": custom_id}
    if record is None:
        error = {"code": "job_missing", "message": f"the job {job_id} of this line is gone"}
        return _line(False, {**head, "response": None, "error": error})
    if record.status is JobStatus.SUCCEEDED:
        response = {"status_code": 200, "request_id": job_id, "body": response_body(record)}
        return _line(True, {**head, "response": response, "error": None})
    if record.status in STOPPED and ends_as in STOPPED_BY:
        code, message = STOPPED_BY[ends_as]
        return _line(False, {**head, "response": None, "error": {"code": code, "message": message}})
    failure = outcome_error(record)
    assert failure is not None
    status = outcome_status(record)
    response = {"status_code": status, "request_id": job_id, "body": openai_error(failure, status)}
    return _line(False, {**head, "response": response, "error": None})


def _line(ok: bool, data: dict[str, Any]) -> OutputLine:
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n"
    return OutputLine(ok, text.encode())
