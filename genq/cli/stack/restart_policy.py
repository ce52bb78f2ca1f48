"""When ``genq up`` restarts a crashed component, when it gives up on it, and how it says a
component ended. Pure functions.

A crash within the window of the crash before it continues a *streak*: each one doubles the
delay before the restart (1 s, 2 s, 4 s … up to the cap). A component that ran for a whole
window without crashing starts again at the first delay. ``limit`` crashes within one window
mean it cannot stay up: the supervisor gives up on it and says so.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Sequence
from dataclasses import dataclass

from genq import constants as c

__all__ = ["RestartPolicy", "crash_streak", "crashes_within", "describe_exit", "restart_delay"]

# 128 + N: how a shell (and `genq runtime`) passes on a child killed by signal N.
SHELL_SIGNAL_BASE = 128


@dataclass(frozen=True)
class RestartPolicy:
    first_delay_seconds: float = c.STACK_RESTART_FIRST_DELAY_SECONDS
    max_delay_seconds: float = c.STACK_RESTART_MAX_DELAY_SECONDS
    limit: int = c.STACK_CRASH_LIMIT
    window_seconds: float = c.STACK_CRASH_WINDOW_SECONDS


def crashes_within(crash_times: Sequence[float], now: float, window_seconds: float) -> int:
    """How many of ``crash_times`` (monotonic seconds) lie within the window ending at ``now``."""
    return sum(1 for t in crash_times if now - window_seconds < t <= now)


def crash_streak(crash_times: Sequence[float], window_seconds: float) -> int:
    """How many crashes, counting back from the last, each came within the window of the next."""
    if not crash_times:
        return 0
    streak = 1
    for earlier, later in zip(reversed(crash_times[:-1]), reversed(crash_times[1:]), strict=True):
        if later - earlier >= window_seconds:
            break
        streak += 1
    return streak


def restart_delay(policy: RestartPolicy, crash_times: Sequence[float]) -> float | None:
    """Seconds to wait before restarting after the last of ``crash_times`` (in order), or None
    when the component crashed ``policy.limit`` times within one window: give up on it."""
    if not crash_times:
        raise ValueError("restart_delay needs the crash that just happened")
    if crashes_within(crash_times, crash_times[-1], policy.window_seconds) >= policy.limit:
        return None
    doublings = crash_streak(crash_times, policy.window_seconds) - 1
    return min(policy.first_delay_seconds * 2.0**doublings, policy.max_delay_seconds)


def describe_exit(returncode: int) -> str:
    """How a component ended, for a person: ``Popen.returncode`` in words."""
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-returncode).name}"
        return f"was killed by signal {-returncode}"
    if returncode > SHELL_SIGNAL_BASE:
        with contextlib.suppress(ValueError):
            name = signal.Signals(returncode - SHELL_SIGNAL_BASE).name
            return f"exited with code {returncode} ({name})"
    return f"exited with code {returncode}"
