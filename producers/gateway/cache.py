"""A small time-bounded map, for facts the gateway may trust for a few seconds."""

from __future__ import annotations

import time
from typing import Generic, TypeVar

V = TypeVar("V")


class TtlCache(Generic[V]):
    """Entries trusted for ``ttl_seconds`` after ``put``; a ttl of 0 remembers nothing."""

    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[str, tuple[V, float]] = {}

    def get(self, key: str) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] < time.monotonic():
            del self._entries[key]
            return None
        return entry[0]

    def put(self, key: str, value: V) -> None:
        if self.ttl_seconds <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # crude, but bounded; a flood of keys only costs store reads
        self._entries[key] = (value, time.monotonic() + self.ttl_seconds)
