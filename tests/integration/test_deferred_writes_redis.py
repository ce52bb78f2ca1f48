"""Deferred writes against a real Redis and redis-py: a refused write and a connection killed
with answers owed each run their redo, as the scripted unit tests assume
(tests/unit/test_deferred_writes.py)."""

from __future__ import annotations

import time

import pytest
import redis

from workers.internals.deferred import DeferredWrites

pytestmark = pytest.mark.integration


def test_a_write_redis_refuses_runs_its_redo(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set("a-string", "x")
    writes = DeferredWrites(client.connection_pool)
    redone: list[str] = []
    try:
        # WRONGTYPE: HSET on a string. The ZADD in the same send still lands.
        writes.send(
            ("ZADD", "index", 1, "tag"),
            ("HSET", "a-string", "tag", "payload"),
            redo=lambda: redone.append("refused"),
        )
        writes.send(("HSET", "record", "tag", "payload"), redo=lambda: redone.append("fine"))
        writes.settle()
    finally:
        writes.close()
        client.close()
    assert redone == ["refused"]
    with redis.Redis.from_url(redis_url) as check:
        assert check.zscore("index", "tag") == 1 and check.hget("record", "tag") == b"payload"


def test_answers_lost_with_a_killed_connection_run_every_owed_redo(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    writes = DeferredWrites(client.connection_pool)
    redone: list[str] = []
    try:
        writes._conn.connect()
        writes._conn.send_command("CLIENT", "SETNAME", "deferred")
        assert writes._conn.read_response() == b"OK"
        # Block the connection so its next answers cannot arrive, then kill it.
        writes.send(("BLPOP", "never", 5), redo=lambda: redone.append("blpop"))
        writes.send(("HSET", "record", "tag", "payload"), redo=lambda: redone.append("hset"))
        started = time.monotonic()
        [victim] = [c["id"] for c in client.client_list() if c["name"] == "deferred"]
        client.execute_command("CLIENT", "KILL", "ID", victim)
        writes.settle()
        assert time.monotonic() - started < 4  # the kill, not BLPOP's timeout, ended the wait
    finally:
        writes.close()
        client.close()
    assert redone == ["blpop", "hset"]
