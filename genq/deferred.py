"""Redis writes whose answer nobody waits for: sent at once, answers read later.

A write that only has to reach Redis before the next step (kombu's record of a delivered or
acknowledged message) then costs its sending, not a round trip. Each thread has its own
connection; what it owes is read before its next send, when it has almost always arrived.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis

log = logging.getLogger(__name__)

# Answers owed before a send waits for them rather than leave them unread.
MAX_OWED = 256


class DeferredWrites:
    """Fire-and-read-later writes on connections of ``pool`` (one per thread)."""

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self._pool = pool
        self._local = threading.local()
        self._states: list[tuple[Any, list[int]]] = []
        self._states_lock = threading.Lock()

    def _connection(self) -> tuple[Any, list[int]]:
        state = getattr(self._local, "state", None)
        if state is None:
            conn = self._pool.connection_class(**self._pool.connection_kwargs)
            state = self._local.state = (conn, [0])
            with self._states_lock:
                self._states.append(state)
        return state

    def send(self, *commands: tuple[Any, ...]) -> None:
        """Send ``commands`` in one write; raises ``redis.ConnectionError`` if it could not."""
        conn, owed = self._connection()
        self._read_answers(conn, owed, wait=owed[0] >= MAX_OWED)
        try:
            conn.send_packed_command(conn.pack_commands(commands))
        except redis.RedisError:
            owed[0] = 0
            conn.disconnect()
            raise
        owed[0] += len(commands)

    def settle(self) -> None:
        """Wait for every answer this thread is owed (before anything that must see them)."""
        state = getattr(self._local, "state", None)
        if state is not None:
            self._read_answers(*state, wait=True)

    def _read_answers(self, conn: Any, owed: list[int], *, wait: bool) -> None:
        try:
            while owed[0] and (wait or conn.can_read(timeout=0)):
                owed[0] -= 1
                try:
                    conn.read_response()
                except redis.ResponseError as exc:
                    log.warning("a deferred Redis write failed: %s", exc)
        except redis.RedisError as exc:  # sent, fate unknown: the writer's own recovery holds
            log.warning("lost the answers of %d deferred Redis write(s): %s", owed[0], exc)
            owed[0] = 0
            conn.disconnect()

    def close(self) -> None:
        """Read what every thread is owed and close the connections (threads done sending)."""
        with self._states_lock:
            states, self._states = self._states, []
        for conn, owed in states:
            self._read_answers(conn, owed, wait=True)
            conn.disconnect()
        self._local = threading.local()
