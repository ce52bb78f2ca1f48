"""Redis key names, built in one place from the prefixes in ``constants``."""

from __future__ import annotations

from genq import constants as c


def cancel_key(job_id: str) -> str:
    return f"{c.CANCEL_KEY_PREFIX}{job_id}"


def stream_key(job_id: str) -> str:
    return f"{c.STREAM_KEY_PREFIX}{job_id}"


def rate_key(key_id: str) -> str:
    return f"{c.RATE_KEY_PREFIX}{key_id}"
