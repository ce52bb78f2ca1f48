"""The webhook retry schedule and response verdicts: pure tables."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from genq import constants as c
from workers.webhooks.schedule import (
    Verdict,
    classify,
    next_delay,
    parse_retry_after,
    retry_after_for,
)

SVIX = list(c.WEBHOOK_RETRY_SCHEDULE_SECONDS)
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (201, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (299, Verdict.DELIVERED),
        (301, Verdict.FAILED),
        (302, Verdict.FAILED),
        (307, Verdict.FAILED),
        (400, Verdict.FAILED),
        (404, Verdict.FAILED),
        (410, Verdict.GONE),
        (429, Verdict.FAILED),
        (500, Verdict.FAILED),
        (503, Verdict.FAILED),
        (None, Verdict.FAILED),
        (100, Verdict.FAILED),
    ],
)
def test_classify(status: int | None, verdict: Verdict) -> None:
    assert classify(status) is verdict


@pytest.mark.parametrize(
    ("attempts_made", "retry_after", "delay"),
    [
        (0, None, 0),  # the first attempt: immediately
        (1, None, 5),
        (2, None, 300),
        (3, None, 1800),
        (4, None, 7200),
        (5, None, 18000),
        (6, None, 36000),
        (7, None, 36000),
        (8, None, None),  # eight attempts made: exhausted
        (20, None, None),
        (1, 60.0, 60),  # Retry-After postpones the 5 s retry
        (2, 60.0, 300),  # but never brings a later one forward
        (1, 10**9, 36000),  # and is capped at the longest step
        (8, 1.0, None),  # nor revives an exhausted delivery
    ],
)
def test_next_delay_svix_schedule(
    attempts_made: int, retry_after: float | None, delay: float | None
) -> None:
    assert next_delay(attempts_made, SVIX, retry_after) == delay


@pytest.mark.parametrize(
    ("schedule", "attempts_made", "delay"),
    [([0, 1, 1, 2], 3, 2), ([0, 1, 1, 2], 4, None), ([0], 1, None), ([], 0, None)],
)
def test_next_delay_short_schedules(
    schedule: list[float], attempts_made: int, delay: float | None
) -> None:
    assert next_delay(attempts_made, schedule) == delay


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("5", 5.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("Thu, 01 Jan 2026 12:00:30 GMT", 30.0),
        ("Thu, 01 Jan 2026 11:00:00 GMT", 0.0),  # in the past: now
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


@pytest.mark.parametrize(
    ("status", "header", "seconds"),
    [(429, "7", 7.0), (503, "7", 7.0), (500, "7", None), (200, "7", None), (None, "7", None)],
)
def test_retry_after_only_for_429_and_503(
    status: int | None, header: str, seconds: float | None
) -> None:
    assert retry_after_for(status, header, NOW) == seconds
