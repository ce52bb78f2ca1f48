"""A job ``POST /v1/responses`` made, in the Responses API's terms: how it is marked, its id,
its status. Pure: the gateway shows responses with it, the store writes their webhook events
(``response.completed``…) with it.

Status: queued -> ``queued``; running -> ``in_progress``; succeeded -> ``completed``, or
``incomplete`` when the runtime stopped at the token limit; cancelled -> ``cancelled``;
failed, expired, dead-lettered -> ``failed``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from schemas.jobs import JobRecord
from schemas.states import JobStatus

# The metadata key of genq's own that marks a job as a response (its value: what the job
# remembers of the request, ``producers.gateway.responses_marks``).
RESPONSE_MARKER = "genq_response"
RESPONSE_PREFIX = "resp_"
LENGTH = "length"

QUEUED = "queued"
IN_PROGRESS = "in_progress"
COMPLETED = "completed"
INCOMPLETE = "incomplete"
CANCELLED = "cancelled"
FAILED = "failed"
# The webhook event of each final status (OpenAI's names).
RESPONSE_EVENT_TYPES = {
    status: f"response.{status}" for status in (COMPLETED, INCOMPLETE, CANCELLED, FAILED)
}


def is_response_job(metadata: Mapping[str, str]) -> bool:
    return RESPONSE_MARKER in metadata


def response_id(job_id: str) -> str:
    """``resp_`` and the job's id as 32 hex digits."""
    return RESPONSE_PREFIX + uuid.UUID(job_id).hex


def response_status(record: JobRecord) -> str:
    status = record.status
    if status is JobStatus.QUEUED:
        return QUEUED
    if status is JobStatus.RUNNING:
        return IN_PROGRESS
    if status is JobStatus.SUCCEEDED:
        reason = record.result.finish_reason if record.result else None
        return INCOMPLETE if reason == LENGTH else COMPLETED
    if status is JobStatus.CANCELLED:
        return CANCELLED
    return FAILED


def response_event_type(record: JobRecord) -> str | None:
    """The webhook event a response's job sends as it reaches ``record.status``: None for a
    job that is not a response, or a status that is not final."""
    if not is_response_job(record.metadata) or not record.status.terminal:
        return None
    return RESPONSE_EVENT_TYPES[response_status(record)]
