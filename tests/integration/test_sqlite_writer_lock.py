"""SQLite writers queue on a lock file beside the database, across threads and processes."""

from __future__ import annotations

import fcntl
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, Table, func, insert, select

from genq.store import StoreUnavailable, build_engine
from genq.store.engine import reader
from genq.store.sqlite_writer_lock import WRITER_LOCK_SUFFIX, WriterLockConnection

pytestmark = pytest.mark.integration

table = Table("t", MetaData(), Column("id", Integer, primary_key=True))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "writers.db"
    engine = build_engine(f"sqlite:///{path}")
    table.metadata.create_all(engine)
    engine.dispose()
    return path


@pytest.fixture
def engine(db: Path) -> Iterator[Engine]:
    engine = build_engine(f"sqlite:///{db}")
    yield engine
    engine.dispose()


def writer_lock_is_free(db: Path) -> bool:
    with open(f"{db}{WRITER_LOCK_SUFFIX}", "ab") as probe:
        try:
            fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(probe.fileno(), fcntl.LOCK_UN)
        return True


def count(engine: Engine) -> int:
    with reader(engine).connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_a_writer_holds_the_lock_until_commit_and_the_next_one_goes_then(
    db: Path, engine: Engine
) -> None:
    other = build_engine(f"sqlite:///{db}")
    done = threading.Event()

    def second_writer() -> None:
        with other.begin() as conn:
            conn.execute(insert(table))
        done.set()

    try:
        with engine.begin() as conn:
            conn.execute(insert(table))
            assert not writer_lock_is_free(db)
            thread = threading.Thread(target=second_writer)
            thread.start()
            assert not done.wait(0.3)  # waits for the lock
            assert count(engine) == 0  # reads do not wait for writers
        assert done.wait(10)
        thread.join()
        assert count(engine) == 2
        assert writer_lock_is_free(db)
    finally:
        other.dispose()


def test_rollback_and_a_failed_statement_release_the_lock(db: Path, engine: Engine) -> None:
    with engine.connect() as conn:
        conn.begin()
        conn.execute(insert(table))
        assert not writer_lock_is_free(db)
        conn.rollback()
        assert writer_lock_is_free(db)
    with pytest.raises(Exception, match="UNIQUE"), engine.begin() as conn:
        conn.execute(insert(table).values(id=1))
        conn.execute(insert(table).values(id=1))
    assert writer_lock_is_free(db)
    assert count(engine) == 0


def test_no_lock_within_the_timeout_is_a_locked_database(db: Path) -> None:
    with open(f"{db}{WRITER_LOCK_SUFFIX}", "ab") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
        conn = WriterLockConnection(str(db))
        try:
            with pytest.raises(Exception, match="database is locked"):
                conn.acquire_writer_lock(timeout=0.2)
        finally:
            conn.close()


HOLDER = """
import sys, time
from sqlalchemy import text
from genq.store import build_engine
engine = build_engine(sys.argv[1])
conn = engine.connect()
conn.begin()
conn.execute(text("INSERT INTO t DEFAULT VALUES"))
print("holding", flush=True)
time.sleep(120)
"""


def test_a_writer_killed_mid_transaction_does_not_block_the_next(db: Path, engine: Engine) -> None:
    argv = [sys.executable, "-c", HOLDER, f"sqlite:///{db}"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "holding"
            assert not writer_lock_is_free(db)
            holder.send_signal(signal.SIGKILL)
            holder.wait(10)
            started = time.monotonic()
            with engine.begin() as conn:
                conn.execute(insert(table))
            assert time.monotonic() - started < 10  # not the 30 s busy timeout
            assert count(engine) == 1  # the killed writer's row was rolled back
        finally:
            holder.kill()


def test_an_in_memory_database_has_no_lock_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where a lock file named after ":memory:" would appear
    engine = build_engine("sqlite://")
    try:
        table.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(table))
            assert not conn.connection.dbapi_connection.uses_writer_lock  # type: ignore[union-attr]
        assert count(engine) == 1
    finally:
        engine.dispose()
    assert list(tmp_path.iterdir()) == []


def test_database_errors_still_surface(db: Path, engine: Engine) -> None:
    with pytest.raises(StoreUnavailable) as failed, engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO missing VALUES (1)")
    assert "no such table" in str(failed.value.__cause__)
    assert writer_lock_is_free(db)


def test_no_lock_through_the_engine_is_the_stores_unavailable_error(
    db: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("genq.store.sqlite_writer_lock.WRITER_LOCK_TIMEOUT_SECONDS", 0.2)
    with open(f"{db}{WRITER_LOCK_SUFFIX}", "ab") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
        with pytest.raises(StoreUnavailable) as failed, engine.begin() as conn:
            conn.execute(insert(table))
    assert "database is locked" in str(failed.value.__cause__)
    with engine.begin() as conn:  # the connection is fine afterwards
        conn.execute(insert(table))
    assert count(engine) == 1
