"""Build the SQLAlchemy engine for any URL; SQLite gets WAL and a busy timeout."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from genq.store.tables import metadata

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


READ_ONLY = "genq_read_only"


def _sqlite_begin(conn: Any) -> None:
    # pysqlite's deferred BEGIN turns concurrent read-then-write into SQLITE_BUSY; a writing
    # transaction takes the write lock up front so the busy timeout applies. Reads (engines
    # from ``reader()``) stay deferred: in WAL mode they never wait for a writer.
    if conn.get_execution_options().get(READ_ONLY):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def reader(engine: Engine) -> Engine:
    """A view of ``engine`` (same pool) for read-only work: it never takes SQLite's write lock."""
    return engine.execution_options(**{READ_ONLY: True})


def build_engine(url: str, *, wal_autocheckpoint: bool = True) -> Engine:
    """An engine for ``url``; for SQLite the parent directory is created.

    ``wal_autocheckpoint=False`` (SQLite only; other databases ignore it): this engine's commits
    never run the WAL checkpoint themselves; run ``WalCheckpointer`` beside it (see there).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
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
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def create_schema(engine: Engine) -> None:
    """Create missing tables directly (tests and first start; production runs migrations)."""
    metadata.create_all(engine)


class WalCheckpointer:
    """Checkpoints a SQLite WAL from a thread of its own, every ``interval_seconds``.

    By default the commit that grows the WAL past 1000 pages runs the checkpoint (and its
    fsync) itself, tens of milliseconds during which a request holding the store waits; the
    gateway turns that off (``build_engine(..., wal_autocheckpoint=False)``) and runs this
    instead. A PASSIVE checkpoint never blocks writers. Other processes keep checkpointing as
    usual.
    """

    def __init__(self, engine: Engine, interval_seconds: float = 0.5) -> None:
        self.engine = engine
        self.interval_seconds = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="genq-wal-checkpoint", daemon=True)
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
            except Exception:  # a busy or missing file: the next round tries again
                log.debug("WAL checkpoint failed", exc_info=True)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
