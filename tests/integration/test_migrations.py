"""Alembic migrations on SQLite and a real PostgreSQL: the result equals ``tables.py``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import Connection, insert, inspect, select, text

from genq.store import build_engine, create_schema
from genq.store.migrate import (
    SchemaMismatch,
    current_revision,
    head_revision,
    schema_differences,
    upgrade_database,
)
from genq.store.tables import jobs, metadata
from tests.support.environment import process_env
from tests.support.processes import REPO_ROOT

pytestmark = pytest.mark.integration

T = TypeVar("T")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


def _with_connection(url: str, check: Callable[[Connection], T]) -> T:
    engine = build_engine(url)
    try:
        with engine.connect() as conn:
            return check(conn)
    finally:
        engine.dispose()


def test_upgrade_builds_exactly_the_declared_schema(empty_store: str) -> None:
    assert current_revision(empty_store) is None
    assert upgrade_database(empty_store) == head_revision()
    assert current_revision(empty_store) == head_revision()
    # Drift between tables.py and the migrations (a column added without a revision) fails here
    # and names what differs; write a new revision under genq/migrations/versions/.
    differences = _with_connection(empty_store, schema_differences)
    assert differences == [], f"tables.py and the migrations differ: {differences}"
    tables = _with_connection(empty_store, lambda conn: set(inspect(conn).get_table_names()))
    assert tables == set(metadata.tables) | {"alembic_version"}


def test_upgrade_again_is_a_no_op(empty_store: str) -> None:
    upgrade_database(empty_store)
    upgrade_database(empty_store)
    assert current_revision(empty_store) == head_revision()


def test_concurrent_upgrades_migrate_once(empty_store: str) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        revisions = list(pool.map(lambda _: upgrade_database(empty_store), range(4)))
    assert revisions == [head_revision()] * 4
    rows = _with_connection(
        empty_store,
        lambda conn: conn.execute(text("SELECT version_num FROM alembic_version")).all(),
    )
    assert rows == [(head_revision(),)]


def test_processes_starting_together_migrate_once(empty_store: str, tmp_path: Path) -> None:
    env = {"GENQ_DATA_DIR": str(tmp_path), "GENQ_DATABASE_URL": empty_store}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "genq", "db", "upgrade"],
            env=process_env(env),
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], outputs
    assert current_revision(empty_store) == head_revision()


def test_store_made_by_create_schema_is_adopted(empty_store: str) -> None:
    engine = build_engine(empty_store)
    create_schema(engine)
    engine.dispose()
    assert current_revision(empty_store) is None
    assert upgrade_database(empty_store) == head_revision()
    assert current_revision(empty_store) == head_revision()


def test_unversioned_store_with_another_schema_is_refused(empty_store: str) -> None:
    engine = build_engine(empty_store)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE jobs (id VARCHAR(36) PRIMARY KEY)"))
    engine.dispose()
    with pytest.raises(SchemaMismatch, match="no migration history"):
        upgrade_database(empty_store)


def test_downgrade_to_base_and_back(empty_store: str) -> None:
    from alembic import command

    from genq.store.migrate import alembic_config

    upgrade_database(empty_store)
    engine = build_engine(empty_store)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    tables = _with_connection(empty_store, lambda conn: set(inspect(conn).get_table_names()))
    assert tables <= {"alembic_version"}
    engine.dispose()
    upgrade_database(empty_store)
    assert _with_connection(empty_store, schema_differences) == []


def _genq(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "genq", *argv],
        env=process_env(env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_db_commands(tmp_data_dir: Path) -> None:
    env = {"GENQ_DATA_DIR": str(tmp_data_dir)}
    before = _genq(["db", "current"], env)
    assert before.returncode == 0, before.stderr
    assert "current none" in before.stdout
    upgraded = _genq(["db", "upgrade"], env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"revision {head_revision()}" in upgraded.stdout
    after = _genq(["db", "current"], env)
    assert f"current {head_revision()}; head {head_revision()}; up to date" in after.stdout


def test_db_upgrade_reports_an_unreachable_store_as_an_error(tmp_data_dir: Path) -> None:
    env = {
        "GENQ_DATA_DIR": str(tmp_data_dir),
        "GENQ_DATABASE_URL": "postgresql+psycopg://genq:hunter2@127.0.0.1:1/genq",
    }
    result = _genq(["db", "upgrade"], env)
    assert result.returncode == 1
    error = json.loads(result.stderr.strip().splitlines()[-1])["error"]
    assert "could not migrate the result store" in error["message"]
    assert "hunter2" not in result.stderr + result.stdout


def test_upgrade_from_0003_moves_queued_jobs_dispatch_by_time(empty_store: str) -> None:
    """0004 gives queued jobs' dispatch-by time its own column; running jobs keep their lease."""
    from alembic import command

    from genq.store.migrate import alembic_config

    engine = build_engine(empty_store)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0003_reply_claims")
    dispatch_by = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    lease = dispatch_by + timedelta(minutes=1)
    rows = {"q": ("queued", dispatch_by), "r": ("running", lease), "s": ("succeeded", None)}
    with engine.begin() as conn:  # the 0003 columns only: no dispatch_by yet
        for job_id, (status, expires) in rows.items():
            conn.execute(insert(jobs).values(**_job_row(job_id, status), lease_expires_at=expires))
    engine.dispose()
    upgrade_database(empty_store)

    def times(conn: Connection) -> dict[str, tuple[object, object]]:
        query = select(jobs.c.id, jobs.c.dispatch_by, jobs.c.lease_expires_at)
        return {row[0]: (row[1], row[2]) for row in conn.execute(query)}

    assert _with_connection(empty_store, times) == {
        "q": (dispatch_by, None),
        "r": (None, lease),
        "s": (None, None),
    }
    engine = build_engine(empty_store)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0003_reply_claims")
        back = conn.execute(select(jobs.c.id, jobs.c.lease_expires_at).order_by(jobs.c.id))
        assert back.all() == [("q", dispatch_by), ("r", lease), ("s", None)]
    engine.dispose()


def _job_row(job_id: str, status: str) -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "id": job_id,
        "tenant": "t",
        "status": status,
        "kind": "chat",
        "model": "m",
        "lane": "interactive",
        "priority": 5,
        "request": {},
        "metadata": {},
        "attempts": 0,
        "crashes": 0,
        "cancel_requested": False,
        "created_at": now,
        "updated_at": now,
    }
