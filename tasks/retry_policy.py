"""Pure retry decisions: should this attempt be retried, and after how long."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from schemas import GenqError


class Outcome(StrEnum):
    RETRY = "retry"
    FAIL = "fail"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True)
class RetryDecision:
    outcome: Outcome
    delay_seconds: float = 0.0


def backoff_delay(
    attempt: int,
    *,
    base_seconds: float,
    cap_seconds: float,
    retry_after_seconds: float | None = None,
    jitter: float | None = None,
) -> float:
    """Exponential backoff with equal jitter, never sooner than the runtime's ``Retry-After``.

    The exponential delay is ``base_seconds * 2 ** (attempt - 1)``, capped at ``cap_seconds``;
    the wait is its first half plus a random part of its second half, so retries spread out
    but never come back at once (full jitter's draw can be zero). A ``Retry-After`` longer
    than that wins, up to ten times ``cap_seconds``. ``attempt`` counts from 1 (the attempt
    that just failed); ``jitter`` in [0, 1) replaces the random draw, for tests.
    """
    draw = random.random() if jitter is None else jitter
    ceiling = min(cap_seconds, base_seconds * float(2 ** max(attempt - 1, 0)))
    delay = ceiling / 2 + draw * ceiling / 2
    if retry_after_seconds is not None:
        delay = max(delay, min(retry_after_seconds, cap_seconds * 10))
    return round(delay, 3)


def decide(
    error: GenqError,
    *,
    attempt: int,
    max_retries: int,
    base_seconds: float,
    cap_seconds: float,
    jitter: float | None = None,
) -> RetryDecision:
    """Transient errors retry until ``max_retries`` retries are spent, then dead-letter."""
    if not error.retryable:
        return RetryDecision(Outcome.FAIL)
    if attempt > max_retries:
        return RetryDecision(Outcome.DEAD_LETTER)
    retry_after = getattr(error, "retry_after_seconds", None)
    delay = backoff_delay(
        attempt,
        base_seconds=base_seconds,
        cap_seconds=cap_seconds,
        retry_after_seconds=retry_after,
        jitter=jitter,
    )
    return RetryDecision(Outcome.RETRY, delay)
