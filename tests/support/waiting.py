"""Waiting for a condition that other threads or processes make true: the one way tests wait
(never a fixed sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis


def eventually(
    condition: Callable[[], bool], timeout: float = 3.0, *, interval: float = 0.02
) -> bool:
    """Whether ``condition()`` holds within ``timeout`` seconds (checked every ``interval``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


def stream_reader_blocked(client: redis.Redis) -> bool:
    """Whether some connection to ``client``'s server is blocked in XREAD: a long poll or an
    SSE stream waiting for its job's next chunk (one is in place, not just requested)."""
    return any(
        entry.get("cmd") == "xread" and "b" in entry.get("flags", "")
        for entry in client.client_list()
    )
