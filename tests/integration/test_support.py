"""The test infrastructure itself: real servers start, survive what they must, leave nothing."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support import ManagedProcess, PostgresCluster, RedisServer, port_is_open

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


def test_redis_server_answers_on_loopback(redis_server: RedisServer) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    with redis_server.client() as client:
        assert client.ping()
        assert client.config_get("bind")["bind"] == "127.0.0.1"


def test_redis_url_starts_empty(redis_url: str, redis_server: RedisServer) -> None:
    with redis_server.client() as client:
        assert client.dbsize() == 0
        client.set("genq:test:leftover", "1")  # the next test's redis_url must flush it


def test_redis_url_flushes_between_tests(redis_url: str, redis_server: RedisServer) -> None:
    with redis_server.client() as client:
        assert client.get("genq:test:leftover") is None


@pytest.mark.chaos
def test_redis_aof_keeps_a_key_across_kill_and_restart(tmp_path: Path) -> None:
    with RedisServer(tmp_path, aof=True) as server:
        port = server.port
        with server.client() as client:
            client.set("genq:test:durable", "kept")
        server.kill()
        assert not server.running
        assert not port_is_open(port)

        server.restart()

        assert server.port == port
        with server.client() as client:
            assert client.get("genq:test:durable") == b"kept"
    assert not port_is_open(port)


def test_redis_without_aof_forgets_on_kill(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server:
        with server.client() as client:
            client.set("genq:test:volatile", "lost")
        server.kill()
        server.restart()
        with server.client() as client:
            assert client.get("genq:test:volatile") is None


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_stop_and_kill_leave_no_child_alive(tmp_path: Path, how: str) -> None:
    """``kill()`` is what the ``start_genq`` teardown does: the whole group is dead when it
    returns (an orphaned child may still be a zombie then, waiting for init: it holds nothing)."""
    script = "sleep 300 & echo child=$!; wait"
    process = ManagedProcess(["sh", "-c", script], log_path=tmp_path / "sh.log").start()
    child_pid = int(process.wait_for_log("child=", timeout=10).split("=", 1)[1])
    assert _alive(child_pid)

    if how == "stop":
        process.stop(timeout=0.5)
    else:
        process.kill()

    assert not process.running
    assert not _alive(child_pid)


def test_wait_for_log_reports_an_early_exit(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "print('boom', flush=True); raise SystemExit(3)"]
    process = ManagedProcess(command, log_path=tmp_path / "exit.log").start()
    with pytest.raises(AssertionError, match=r"exited \(3\)[\s\S]*boom"):
        process.wait_for_log("never printed", timeout=10)
    assert process.stop() == 3


@pytest.mark.postgres
def test_postgres_answers_select_one_through_sqlalchemy(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+psycopg://")
    assert "@127.0.0.1:" in postgres_url
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
            assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == "genq"
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_fresh_postgres_database_is_empty(fresh_postgres_url: str) -> None:
    engine = sa.create_engine(fresh_postgres_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.chaos
def test_postgres_keeps_committed_rows_across_kill_and_restart(tmp_path: Path) -> None:
    with PostgresCluster(tmp_path) as cluster:
        engine = sa.create_engine(cluster.url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("CREATE TABLE kept (id int)"))
                conn.execute(sa.text("INSERT INTO kept VALUES (7)"))
            engine.dispose()
            cluster.kill()
            assert not cluster.running

            cluster.restart()

            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT id FROM kept")).scalar_one() == 7
        finally:
            engine.dispose()
    assert not port_is_open(cluster.port)
    assert (tmp_path / "postgres.log").exists() or (tmp_path / "pg" / "postgres.log").exists()
