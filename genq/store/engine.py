"""Build the SQLAlchemy engine for any URL; SQLite gets WAL and a busy timeout."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from genq.store.tables import metadata

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        # A new store. Switching it needs it to itself, and a genq writer already in a
        # transaction (rollback-journal mode, until the switch) could wait for this very
        # connection's read lock: the switch takes the writer turn like a write.
        turns = isinstance(dbapi_conn, TurnTakingConnection) and dbapi_conn.takes_turns
        if turns:
            dbapi_conn.take_write_turn()
        try:
            _enable_wal(cursor)
        finally:
            if turns:
                dbapi_conn.end_write_turn()
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
WRITER_LOCK_SUFFIX = "-writer.lock"
# How long a writer waits for its turn before failing like SQLite's busy timeout would.
TURN_TIMEOUT_SECONDS = SQLITE_BUSY_TIMEOUT_MS / 1000
TURN_FIRST_PAUSE = 0.0001
TURN_MAX_PAUSE = 0.001


class TurnTakingConnection(sqlite3.Connection):
    """A pysqlite connection whose write transactions take turns on a lock file beside the
    database, across threads and processes.

    SQLite has one writer at a time and makes the others wait in its busy handler, which
    sleeps with a backoff (1, 2, 5, 10 … 100 ms) and so wakes long after the writer before it
    committed. Waiting on an ``flock`` of ``<database>-writer.lock`` instead (tried every
    0.1 to 1 ms) gets the next writer in soon after the previous one commits: two worker
    processes ran 18 % more jobs per second. The kernel drops the lock of a process that dies.
    Writers that do not use it (another program) still meet SQLite's lock and busy timeout.
    """

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        name = os.fspath(database) if isinstance(database, str | os.PathLike) else ""
        plain_file = name not in ("", ":memory:") and not kwargs.get("uri")
        self._turn_path = name + WRITER_LOCK_SUFFIX if plain_file else None
        self._turn_file: IO[bytes] | None = None  # closed (and unlocked) with the connection
        self._turn_pid = 0
        self._holding = False

    @property
    def takes_turns(self) -> bool:
        """False for an in-memory or URI database: those keep SQLite's own locking only."""
        return self._turn_path is not None

    def take_write_turn(self, timeout: float | None = None) -> None:
        """Wait until no other writer holds the turn (or raise like a busy database)."""
        if self._turn_path is None or self._holding:
            return
        timeout = TURN_TIMEOUT_SECONDS if timeout is None else timeout
        if self._turn_file is None or self._turn_pid != os.getpid():
            # A descriptor of this process's own: a forked child must not share its parent's
            # (unlocking a shared one would end the parent's turn).
            self._turn_file = self._open_turn_file(self._turn_path)
            self._turn_pid = os.getpid()
        fd = self._turn_file.fileno()
        deadline = time.monotonic() + timeout
        pause = TURN_FIRST_PAUSE
        while not self._try_lock(fd):
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError(
                    f"database is locked: no turn to write within {timeout:.0f} s"
                )
            time.sleep(pause)
            pause = min(pause * 2, TURN_MAX_PAUSE)
        self._holding = True

    def _try_lock(self, fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as exc:  # ENOLCK and the like: a database error, not a crash
            raise sqlite3.OperationalError(f"cannot lock {self._turn_path}: {exc}") from exc
        return True

    @staticmethod
    def _open_turn_file(path: str) -> IO[bytes]:
        """The lock file, made with the database file's permissions (as SQLite makes -wal)."""
        try:
            try:
                mode = os.stat(path[: -len(WRITER_LOCK_SUFFIX)]).st_mode & 0o666
            except FileNotFoundError:
                mode = 0o644
            return os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, mode), "r+b")
        except OSError as exc:
            raise sqlite3.OperationalError(f"cannot open the writer lock {path}: {exc}") from exc

    def end_write_turn(self) -> None:
        """Let the next writer in (after this connection's COMMIT or ROLLBACK)."""
        if not self._holding:
            return
        self._holding = False
        if self._turn_file is not None and self._turn_pid == os.getpid():
            fcntl.flock(self._turn_file.fileno(), fcntl.LOCK_UN)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.end_write_turn()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.end_write_turn()

    def close(self) -> None:
        try:
            self.end_write_turn()
            self._close_turn_file()
        finally:
            super().close()

    def _close_turn_file(self) -> None:
        # Closing never ends another process's turn: a lock lasts while any descriptor of it
        # is open (a forked child's copy is one), and only LOCK_UN ends it early.
        file, self._turn_file = getattr(self, "_turn_file", None), None
        if file is not None:
            file.close()

    def __del__(self) -> None:  # a connection dropped without close() (an undisposed pool)
        self._close_turn_file()


def _sqlite_begin(conn: Any) -> None:
    # pysqlite's deferred BEGIN turns concurrent read-then-write into SQLITE_BUSY; a writing
    # transaction takes the write lock up front so the busy timeout applies. Reads (engines
    # from ``reader()``) stay deferred: in WAL mode they never wait for a writer. The BEGIN goes
    # straight to the DBAPI connection (a statement through SQLAlchemy costs more than it).
    dbapi_conn = conn.connection.dbapi_connection
    writes = not conn.get_execution_options().get(READ_ONLY)
    turns = writes and isinstance(dbapi_conn, TurnTakingConnection)
    statement = "BEGIN IMMEDIATE" if writes else "BEGIN"
    try:
        if turns:
            dbapi_conn.take_write_turn()
        dbapi_conn.execute(statement)
    except BaseException as exc:
        if turns:
            dbapi_conn.end_write_turn()
        if isinstance(exc, sqlite3.Error):  # as SQLAlchemy raises it: callers catch its errors
            raise DBAPIError.instance(statement, None, exc, sqlite3.Error) from exc
        raise


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
        engine = create_engine(
            url,
            connect_args={
                "check_same_thread": False,
                "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                "factory": TurnTakingConnection,
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
