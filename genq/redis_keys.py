"""Redis key names, built in one place from the prefixes in ``constants``."""

from __future__ import annotations

from genq import constants as c


def cancel_key(job_id: str) -> str:
    return f"{c.CANCEL_KEY_PREFIX}{job_id}"


def stream_key(job_id: str) -> str:
    return f"{c.STREAM_KEY_PREFIX}{job_id}"


def rate_key(key_id: str) -> str:
    return f"{c.RATE_KEY_PREFIX}{key_id}"


def openai_waiters_key(job_id: str) -> str:
    """The requests waiting on a job through the OpenAI routes with an Idempotency-Key."""
    return f"{c.OPENAI_WAITERS_KEY_PREFIX}{job_id}"


def reply_sent_key(job_id: str, reply_id: int) -> str:
    """The marker of one outbox reply (a job's row for one terminal transition)."""
    return f"{c.REPLY_SENT_KEY_PREFIX}{job_id}:{reply_id}"
