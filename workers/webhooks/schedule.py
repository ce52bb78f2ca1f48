"""What happens after a webhook attempt: pure decisions over status codes and attempt counts.

The schedule is a list of delays; entry ``n`` is the wait before attempt ``n + 1`` (entry 0 is
the first attempt, normally 0 = immediately). After ``len(schedule)`` attempts a delivery is
exhausted.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

RETRY_AFTER_STATUSES = frozenset({429, 503})


class Verdict(StrEnum):
    """How one attempt ended, as far as the delivery is concerned."""

    DELIVERED = "delivered"  # 2xx
    GONE = "gone"  # 410: the receiver wants no more; disable the endpoint
    FAILED = "failed"  # anything else, including 3xx, timeouts and refused addresses


def classify(status_code: int | None) -> Verdict:
    """The verdict for a response status; None means no response at all."""
    if status_code is not None and 200 <= status_code < 300:
        return Verdict.DELIVERED
    if status_code == 410:
        return Verdict.GONE
    return Verdict.FAILED


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or HTTP-date); None if unusable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def next_delay(
    attempts_made: int, schedule: Sequence[float], retry_after: float | None = None
) -> float | None:
    """Seconds to wait before the next attempt, or None when the schedule is used up.

    A ``Retry-After`` can only postpone the scheduled attempt, and never beyond the longest
    step of the schedule, so a hostile header cannot park a delivery forever.
    """
    if attempts_made >= len(schedule):
        return None
    delay = float(schedule[attempts_made])
    if retry_after is not None:
        delay = max(delay, min(retry_after, max(schedule)))
    return delay


def retry_after_for(status_code: int | None, header: str | None, now: datetime) -> float | None:
    """The ``Retry-After`` to honour: only on 429 and 503."""
    if status_code not in RETRY_AFTER_STATUSES:
        return None
    return parse_retry_after(header, now)
