"""Build the SQLAlchemy engine for any URL; SQLite gets WAL and a busy timeout."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from genq.store.errors import StorePool, StoreUnavailable, unavailable_instead
from genq.store.sqlite_writer_lock import WriterLockConnection
from genq.store.tables import metadata

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        # A new store. Switching it needs it to itself, and a genq writer already in a
        # transaction (rollback-journal mode, until the switch) could wait for this very
        # connection's read lock: the switch takes the writer lock like a write.
        locks = isinstance(dbapi_conn, WriterLockConnection) and dbapi_conn.uses_writer_lock
        if locks:
            dbapi_conn.acquire_writer_lock()
        try:
            _enable_wal(cursor)
        finally:
            if locks:
                dbapi_conn.release_writer_lock()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _enable_wal(cursor: Any) -> None:
    """Switch a new database to WAL. The switch needs the database to itself, and SQLite
    answers "locked" at once (no busy wait) while another connection reads or writes it, as
    when several processes open a new store together: try again until the busy timeout."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = 0.001
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


READ_ONLY = "genq_read_only"


def _sqlite_begin(conn: Any) -> None:
    # pysqlite's deferred BEGIN turns concurrent read-then-write into SQLITE_BUSY; a writing
    # transaction takes the writer lock file and SQLite's write lock up front, so it waits in
    # one queue. Reads (engines from ``reader()``) take neither and stay deferred: in WAL mode
    # they never wait for a writer. The BEGIN goes
    # straight to the DBAPI connection (a statement through SQLAlchemy costs more than it).
    dbapi_conn = conn.connection.dbapi_connection
    writes = not conn.get_execution_options().get(READ_ONLY)
    locks = writes and isinstance(dbapi_conn, WriterLockConnection)
    statement = "BEGIN IMMEDIATE" if writes else "BEGIN"
    try:
        if locks:
            dbapi_conn.acquire_writer_lock()
        dbapi_conn.execute(statement)
    except BaseException as exc:
        if locks:
            dbapi_conn.release_writer_lock()
        if isinstance(exc, sqlite3.Error):  # SQLAlchemy's handle_error does not see a BEGIN hook
            raise StoreUnavailable(f"result store unavailable: {type(exc).__name__}") from exc
        raise


def reader(engine: Engine) -> Engine:
    """A view of ``engine`` (same pool) for read-only work: on SQLite it never takes the writer
    lock file or SQLite's write lock, so it never waits for a writer. Every read uses one."""
    return engine.execution_options(**{READ_ONLY: True})


def build_engine(url: str, *, wal_autocheckpoint: bool = True) -> Engine:
    """An engine for ``url``; for SQLite the parent directory is created.

    ``wal_autocheckpoint=False`` (SQLite only; other databases ignore it): this engine's commits
    never run the WAL checkpoint themselves; run ``WalCheckpointer`` beside it (see there).
    """
    engine = _build_engine(url, wal_autocheckpoint=wal_autocheckpoint)
    # The store's failures reach callers as its own exception (see genq.store.errors).
    event.listen(engine, "handle_error", unavailable_instead)
    return engine


def _build_engine(url: str, *, wal_autocheckpoint: bool) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        on_disk = bool(parsed.database) and parsed.database != ":memory:"
        if on_disk:
            Path(str(parsed.database)).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            # In memory, SQLAlchemy's default pool (one connection per thread) has no timeout.
            **({"poolclass": StorePool} if on_disk else {}),
            connect_args={
                "check_same_thread": False,
                "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                "factory": WriterLockConnection,
            },
        )
        event.listen(engine, "connect", _sqlite_pragmas)

        @event.listens_for(engine, "connect")
        def _no_pysqlite_begin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        event.listen(engine, "begin", _sqlite_begin)
        if not wal_autocheckpoint:

            @event.listens_for(engine, "connect")
            def _no_autocheckpoint(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")

        return engine
    return create_engine(url, poolclass=StorePool, pool_pre_ping=True, pool_size=5, max_overflow=10)


def create_schema(engine: Engine) -> None:
    """Create missing tables directly, for tests and benchmarks. Every genq process migrates
    instead (``genq.store.migrate.upgrade_database``), which adopts a store made this way."""
    metadata.create_all(engine)


class WalCheckpointer:
    """Checkpoints a SQLite WAL from a thread of its own, every ``interval_seconds``.

    By default the commit that grows the WAL past 1000 pages runs the checkpoint (and its
    fsync) itself, tens of milliseconds during which a request holding the store waits; the
    gateway turns that off (``build_engine(..., wal_autocheckpoint=False)``) and runs this
    instead. A PASSIVE checkpoint never blocks writers. Other processes keep checkpointing as
    usual. Building one starts nothing: ``start()`` starts the thread, ``close()`` stops it.
    """

    def __init__(self, engine: Engine, interval_seconds: float = 0.5) -> None:
        self.engine = engine
        self.interval_seconds = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="genq-wal-checkpoint", daemon=True)
        self.checkpoints = 0  # checkpoints completed so far

    def start(self) -> None:
        """Start checkpointing every ``interval_seconds``."""
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            try:
                raw = self.engine.raw_connection()
                try:
                    cursor = raw.cursor()
                    cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    cursor.close()
                finally:
                    raw.close()
                self.checkpoints += 1
            except Exception:  # a busy or missing file: the next round tries again
                log.debug("WAL checkpoint failed", exc_info=True)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
