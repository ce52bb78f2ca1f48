"""Redis writes whose answer nobody waits for: sent at once, answers read later.

A write that only has to reach Redis before the next step (kombu's record of a delivered or
acknowledged message) then costs its sending, not a round trip. All writes go over one
connection, in order, under a lock; the answers owed are read before the next send, when they
have almost always arrived. A write Redis refused, or whose answer was lost with the
connection, is done again by its ``redo`` (a round trip that waits), so a refusal surfaces
as it would have without deferring, one write later.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import Any

import redis

log = logging.getLogger(__name__)

# Writes whose answers are unread before a send waits for them rather than read on.
MAX_OWED = 256


class DeferredWrites:
    """Fire-and-read-later writes on one connection of ``pool``."""

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self._conn = pool.connection_class(**pool.connection_kwargs)
        self._lock = threading.Lock()
        # One entry per send not yet answered: (number of commands, redo).
        self._owed: collections.deque[tuple[int, Callable[[], None]]] = collections.deque()

    def send(self, *commands: tuple[Any, ...], redo: Callable[[], None]) -> None:
        """Send ``commands`` in one write. Raises ``redis.RedisError`` if they could not be
        sent, and whatever an earlier write's ``redo`` raised (the commands are then unsent)."""
        with self._lock:
            self._read_answers(wait=len(self._owed) >= MAX_OWED)
            try:
                self._conn.send_packed_command(self._conn.pack_commands(commands))
            except redis.RedisError:
                self._conn.disconnect()
                raise
            self._owed.append((len(commands), redo))

    def settle(self) -> None:
        """Wait for every answer owed (before anything that must see those writes)."""
        with self._lock:
            self._read_answers(wait=True)

    def close(self) -> None:
        with self._lock:
            try:
                self._read_answers(wait=True)
            except Exception:
                log.warning("deferred Redis writes unconfirmed at close", exc_info=True)
            finally:
                self._conn.disconnect()

    def _read_answers(self, *, wait: bool) -> None:
        while self._owed and (wait or self._conn.can_read(timeout=0)):
            count, redo = self._owed.popleft()
            failed: BaseException | None = None
            try:
                for _ in range(count):
                    try:
                        self._conn.read_response()
                    except redis.ResponseError as exc:
                        failed = failed or exc
            except redis.RedisError as exc:  # the connection went: every later answer too
                failed = exc
                lost = [redo] + [entry[1] for entry in self._owed]
                self._owed.clear()
                self._conn.disconnect()
                log.warning("lost the answers of %d deferred Redis write(s): %s", len(lost), exc)
                _redo_all(lost)
                return
            if failed is not None:
                log.warning("Redis refused a deferred write (%s); doing it again", failed)
                redo()


def _redo_all(redos: list[Callable[[], None]]) -> None:
    """Run every ``redo``; then raise the first failure, if any."""
    first: BaseException | None = None
    for redo in redos:
        try:
            redo()
        except Exception as exc:
            first = first or exc
    if first is not None:
        raise first
