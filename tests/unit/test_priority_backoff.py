import pytest

from schemas import PermanentError, TransientError, celery_priority
from schemas.errors import ErrorCode
from tasks.retry_policy import Outcome, backoff_delay, decide


@pytest.mark.parametrize(("priority", "step"), [(9, 0), (5, 4), (0, 9), (1, 8)])
def test_priority_maps_to_redis_steps_most_urgent_first(priority: int, step: int) -> None:
    assert celery_priority(priority) == step


@pytest.mark.parametrize("bad", [-1, 10, 12])
def test_priority_out_of_range(bad: int) -> None:
    with pytest.raises(ValueError, match="0-9"):
        celery_priority(bad)


@pytest.mark.parametrize(
    ("attempt", "jitter", "expected"),
    [
        (1, 0.0, 0.5),
        (1, 0.999, 0.9995),
        (2, 0.0, 1.0),
        (3, 0.5, 3.0),
        (10, 0.0, 30.0),  # capped at 60 → half of it with zero jitter
        (10, 0.999, 59.97),
    ],
)
def test_backoff_is_exponential_with_equal_jitter_and_cap(
    attempt: int, jitter: float, expected: float
) -> None:
    got = backoff_delay(attempt, base_seconds=1.0, cap_seconds=60.0, jitter=jitter)
    assert got == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize(
    ("attempt", "retry_after", "expected"),
    [
        (1, 7, 7.0),  # longer than the backoff: the runtime's wish wins
        (4, 2, 4.0),  # shorter: the backoff (8 s ceiling, zero jitter) wins
        (1, 10_000, 600.0),  # an absurd Retry-After is held to ten times the cap
        (1, 0, 0.5),
    ],
)
def test_backoff_honours_retry_after_within_reason(
    attempt: int, retry_after: float, expected: float
) -> None:
    got = backoff_delay(
        attempt, base_seconds=1.0, cap_seconds=60.0, retry_after_seconds=retry_after, jitter=0
    )
    assert got == expected


@pytest.mark.parametrize(
    ("error", "attempt", "outcome"),
    [
        (TransientError("down"), 1, Outcome.RETRY),
        (TransientError("down"), 3, Outcome.RETRY),
        (TransientError("down"), 4, Outcome.DEAD_LETTER),
        (
            TransientError("429", code=ErrorCode.RATE_LIMITED, retry_after_seconds=2),
            1,
            Outcome.RETRY,
        ),
        (PermanentError("no model", code=ErrorCode.MODEL_NOT_FOUND), 1, Outcome.FAIL),
        (PermanentError("too long", code=ErrorCode.CONTEXT_LENGTH_EXCEEDED), 1, Outcome.FAIL),
    ],
)
def test_retry_decision(
    error: TransientError | PermanentError, attempt: int, outcome: Outcome
) -> None:
    decision = decide(
        error, attempt=attempt, max_retries=3, base_seconds=1, cap_seconds=60, jitter=0
    )
    assert decision.outcome is outcome
    if outcome is Outcome.RETRY and isinstance(error, TransientError) and error.retry_after_seconds:
        assert decision.delay_seconds >= error.retry_after_seconds
