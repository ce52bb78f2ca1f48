"""`genq up`'s restart policy: delay doubling within a crash streak, giving up, as tables."""

from __future__ import annotations

import pytest

from genq.cli.stack.restart_policy import (
    RestartPolicy,
    crash_streak,
    crashes_within,
    describe_exit,
    restart_delay,
)

POLICY = RestartPolicy(first_delay_seconds=1, max_delay_seconds=30, limit=5, window_seconds=60)


@pytest.mark.parametrize(
    ("crash_times", "expected"),
    [
        ([100.0], 1.0),  # a first crash: restart after the first delay
        ([100.0, 101.5], 2.0),
        ([100.0, 101.5, 104.0], 4.0),
        ([100.0, 101.5, 104.0, 109.0], 8.0),
        ([100.0, 101.5, 104.0, 109.0, 118.0], None),  # 5 within 60 s: give up
        ([0.0, 100.0], 1.0),  # it ran a whole window in between: the streak starts again
        ([0.0, 59.0, 200.0, 201.0], 2.0),
        # A slow crash loop (every 40 s) never reaches the limit but is held at the cap.
        ([0.0, 40.0, 80.0, 120.0, 160.0, 200.0], 30.0),
        ([0.0, 40.0, 80.0, 120.0, 160.0, 200.0, 240.0, 280.0], 30.0),
        # Five crashes, but never five within one window: restarted.
        ([0.0, 30.0, 61.0, 91.0, 122.0], 16.0),
    ],
)
def test_restart_delay(crash_times: list[float], expected: float | None) -> None:
    assert restart_delay(POLICY, crash_times) == expected


def test_restart_delay_needs_a_crash() -> None:
    with pytest.raises(ValueError, match="crash"):
        restart_delay(POLICY, [])


@pytest.mark.parametrize(
    ("crash_times", "now", "expected"),
    [([], 10.0, 0), ([0.0, 50.0, 60.0], 60.0, 2), ([0.0, 1.0], 59.9, 2), ([0.0], 60.0, 0)],
)
def test_crashes_within_the_window(crash_times: list[float], now: float, expected: int) -> None:
    assert crashes_within(crash_times, now, 60.0) == expected


@pytest.mark.parametrize(
    ("crash_times", "expected"),
    [([], 0), ([5.0], 1), ([0.0, 59.9], 2), ([0.0, 60.0], 1), ([0.0, 10.0, 100.0, 110.0], 2)],
)
def test_crash_streak(crash_times: list[float], expected: int) -> None:
    assert crash_streak(crash_times, 60.0) == expected


@pytest.mark.parametrize(
    ("returncode", "said"),
    [
        (-9, "was killed by SIGKILL"),
        (-11, "was killed by SIGSEGV"),
        (-99, "was killed by signal 99"),
        (0, "exited with code 0"),
        (1, "exited with code 1"),
        (128, "exited with code 128"),
        (132, "exited with code 132 (SIGILL)"),  # `genq runtime`'s llama.cpp server died
        (255, "exited with code 255"),
    ],
)
def test_describe_exit(returncode: int, said: str) -> None:
    assert describe_exit(returncode) == said
