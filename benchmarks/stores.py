"""Where a benchmark's jobs are stored: SQLite (a fresh file in each phase's data dir, the
default) or PostgreSQL (a fresh database per phase in a private cluster, started here with
``initdb``/``pg_ctl`` as the tests do). ``python -m benchmarks --store postgres ...``."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from benchmarks.stats import process_tree
from tests.support import PostgresCluster

STORES = ("sqlite", "postgres")


class BenchStore:
    """``env(phase)`` gives the ``GENQ_*`` variables that point a phase at a fresh store."""

    def __init__(self, kind: str, tmp: Path) -> None:
        if kind not in STORES:
            raise SystemExit(f"unknown store {kind!r}; choose from {STORES}")
        self.kind = kind
        self.tmp = tmp
        self._cluster: PostgresCluster | None = None

    def __enter__(self) -> BenchStore:
        if self.kind == "postgres":
            self._cluster = PostgresCluster(self.tmp).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._cluster is not None:
            self._cluster.close()

    def env(self, phase: str) -> dict[str, str]:
        """Nothing for SQLite (each phase has its own data dir); a new database otherwise."""
        if self._cluster is None:
            return {}
        name = "bench_" + "".join(ch if ch.isalnum() else "_" for ch in phase)
        return {"GENQ_DATABASE_URL": self._cluster.create_database(name)}

    def server_pids(self) -> list[int]:
        """The database server's processes (none for SQLite, which runs in its callers)."""
        pid = self._cluster.pid if self._cluster is not None else None
        return process_tree(pid) if pid is not None else []
