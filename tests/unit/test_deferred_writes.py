"""The failure paths of deferred Redis writes (``workers.internals.deferred``), over a scripted
connection: a write Redis refused, answers lost with the connection, a redo that raises, a
send that fails. (tests/integration/test_deferred_writes_redis.py does the first two against
a real Redis, which keeps this script honest.)"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from workers.internals.deferred import MAX_OWED, DeferredWrites

HSET = ("HSET", "unacked", "tag", "payload")
ZADD = ("ZADD", "unacked_index", 1.0, "tag")


class ScriptedConnection:
    """Stands in for ``redis.Connection``: records what is sent, answers from a script."""

    def __init__(self, **_kwargs: Any) -> None:
        self.sent: list[list[tuple[Any, ...]]] = []
        self.answers: deque[object] = deque()
        self.arrived = True  # whether can_read() sees the scripted answers yet
        self.send_error: redis.RedisError | None = None
        self.disconnects = 0

    def pack_commands(self, commands: tuple[tuple[Any, ...], ...]) -> list[tuple[Any, ...]]:
        return list(commands)

    def send_packed_command(self, packed: list[tuple[Any, ...]]) -> None:
        if self.send_error is not None:
            raise self.send_error
        self.sent.append(packed)

    def can_read(self, timeout: float = 0) -> bool:
        return self.arrived and bool(self.answers)

    def read_response(self) -> object:
        answer = self.answers.popleft()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def disconnect(self) -> None:
        self.disconnects += 1


class Redos:
    """Each write's redo, recording that it ran; a redo may be told to raise."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def __call__(self, name: str, raises: Exception | None = None) -> Callable[[], None]:
        def redo() -> None:
            self.ran.append(name)
            if raises is not None:
                raise raises

        return redo


def _writes() -> tuple[DeferredWrites, ScriptedConnection]:
    pool = SimpleNamespace(connection_class=ScriptedConnection, connection_kwargs={})
    writes = DeferredWrites(pool)  # type: ignore[arg-type]
    conn = writes._conn
    assert isinstance(conn, ScriptedConnection)
    return writes, conn


def test_answered_writes_need_no_redo() -> None:
    writes, conn = _writes()
    redos = Redos()
    writes.send(ZADD, HSET, redo=redos("a"))
    conn.answers.extend([1, 1])
    writes.send(HSET, redo=redos("b"))  # reads a's answers first
    conn.answers.append(1)
    writes.settle()
    assert conn.sent == [[ZADD, HSET], [HSET]]
    assert redos.ran == [] and not conn.answers


def test_a_refused_write_is_done_again_by_its_redo() -> None:
    writes, conn = _writes()
    redos = Redos()
    writes.send(ZADD, HSET, redo=redos("a"))
    writes.send(HSET, redo=redos("b"))
    conn.answers.extend([1, redis.ResponseError("WRONGTYPE"), 1])
    writes.settle()
    assert redos.ran == ["a"]  # once, though only one of its two commands was refused
    assert conn.disconnects == 0  # a refusal leaves the connection usable


def test_answers_lost_with_the_connection_redo_every_write_still_owed() -> None:
    writes, conn = _writes()
    redos = Redos()
    writes.send(ZADD, HSET, redo=redos("a"))
    writes.send(HSET, redo=redos("b"))
    writes.send(HSET, redo=redos("c"))
    conn.answers.extend([1, redis.ConnectionError("reset by peer")])
    writes.settle()
    assert redos.ran == ["a", "b", "c"]
    assert conn.disconnects == 1
    conn.answers.clear()
    writes.settle()  # nothing is owed any more
    assert redos.ran == ["a", "b", "c"]


def test_a_redo_that_raises_surfaces_at_the_next_send_which_is_not_sent() -> None:
    writes, conn = _writes()
    redos = Redos()
    writes.send(HSET, redo=redos("a", raises=redis.ConnectionError("still down")))
    conn.answers.append(redis.ResponseError("OOM"))
    with pytest.raises(redis.ConnectionError, match="still down"):
        writes.send(HSET, redo=redos("b"))
    assert conn.sent == [[HSET]]  # b was not sent: kombu's own path takes over
    assert redos.ran == ["a"]


def test_lost_answers_run_every_redo_then_raise_the_first_failure() -> None:
    writes, conn = _writes()
    redos = Redos()
    writes.send(HSET, redo=redos("a", raises=redis.ConnectionError("first")))
    writes.send(HSET, redo=redos("b", raises=redis.ConnectionError("second")))
    writes.send(HSET, redo=redos("c"))
    conn.answers.append(redis.ConnectionError("gone"))
    with pytest.raises(redis.ConnectionError, match="first"):
        writes.settle()
    assert redos.ran == ["a", "b", "c"]


def test_a_send_that_fails_raises_and_owes_nothing() -> None:
    writes, conn = _writes()
    redos = Redos()
    conn.send_error = redis.ConnectionError("refused")
    with pytest.raises(redis.ConnectionError):
        writes.send(HSET, redo=redos("a"))
    assert conn.disconnects == 1
    conn.send_error = None
    writes.settle()
    assert redos.ran == []  # the caller does it kombu's way; no redo is owed


def test_a_send_waits_for_answers_once_too_many_are_owed() -> None:
    writes, conn = _writes()
    redos = Redos()
    conn.arrived = False  # answers exist but have not "arrived": only a wait reads them
    for n in range(MAX_OWED):
        writes.send(HSET, redo=redos(str(n)))
    conn.answers.extend([1] * MAX_OWED)
    assert len(conn.answers) == MAX_OWED
    writes.send(HSET, redo=redos("last"))
    assert not conn.answers  # every owed answer was read before the last send
    assert redos.ran == []


def test_close_reads_what_is_owed_and_disconnects_even_if_a_redo_fails() -> None:
    writes, conn = _writes()
    redos = Redos()
    writes.send(HSET, redo=redos("a", raises=redis.ConnectionError("down")))
    conn.answers.append(redis.ResponseError("READONLY"))
    writes.close()  # logs the failure rather than raising it at shutdown
    assert redos.ran == ["a"] and conn.disconnects == 1
