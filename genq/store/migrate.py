"""Alembic migrations of the result store, run programmatically (no alembic.ini on disk).

Entry points call :func:`upgrade_database` before they use the store; it is cheap when the
store is already at the head revision, and safe when several processes start at once (SQLite
takes its write lock at BEGIN, PostgreSQL an advisory lock in ``migrations/env.py``).
"""

from __future__ import annotations

import threading
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from genq.store.engine import build_engine, reader
from genq.store.errors import StoreUnavailable, describe
from genq.store.tables import metadata

__all__ = [
    "SchemaMismatch",
    "alembic_config",
    "current_revision",
    "head_revision",
    "schema_differences",
    "upgrade_database",
]

SCRIPT_LOCATION = "genq:migrations"
# Alembic's `op` and `context` are module-level proxies: one migration per process at a time.
# Across processes the database serialises them (see the module docstring).
_ALEMBIC_LOCK = threading.Lock()
VERSION_TABLE = "alembic_version"


class SchemaMismatch(StoreUnavailable):
    """The store has genq tables but no migration history, and they differ from the code's."""

    retryable = False


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for genq's migrations; ``connection`` is the one env.py migrates."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision shipped with this genq."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "genq ships at least one migration"
    return head


def current_revision(url: str) -> str | None:
    """The revision the store at ``url`` is at; None when it was never migrated."""
    engine = build_engine(url)
    try:
        with reader(engine).connect() as conn:
            return _current(conn)
    except SchemaMismatch:
        raise
    except (SQLAlchemyError, StoreUnavailable) as exc:
        raise StoreUnavailable(f"result store unavailable: {_describe(exc)}") from exc
    finally:
        engine.dispose()


def upgrade_database(url: str) -> str:
    """Migrate the store at ``url`` to the head revision; returns that revision."""
    head = head_revision()
    engine = build_engine(url)
    try:
        # Read first, without the SQLite writer lock: the store is usually at the head already.
        with reader(engine).connect() as conn:
            if _current(conn) == head:
                return head
        _upgrade(engine)
    except SchemaMismatch:
        raise
    except (SQLAlchemyError, StoreUnavailable) as exc:
        raise StoreUnavailable(
            f"could not migrate the result store {_safe_url(url)}: {_describe(exc)}"
        ) from exc
    finally:
        engine.dispose()
    return head


def schema_differences(conn: Connection) -> list[Any]:
    """What Alembic's autogenerate finds between the live schema and ``tables.py``."""
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return [diff for diff in compare_metadata(context, metadata) if not _ignorable(diff)]


def _upgrade(engine: Engine) -> None:
    # One transaction: on SQLite its BEGIN IMMEDIATE serialises concurrent upgraders.
    with _ALEMBIC_LOCK, engine.begin() as conn:
        config = alembic_config(conn)
        if _current(conn) is None and inspect(conn).has_table("jobs"):
            _adopt_unversioned(conn, config)
        command.upgrade(config, "head")


def _adopt_unversioned(conn: Connection, config: Config) -> None:
    """A store made by ``create_schema`` (tests, early versions): stamp it if it matches."""
    differences = schema_differences(conn)
    if differences:
        shown = "; ".join(str(diff) for diff in differences[:5])
        raise SchemaMismatch(
            "the result store has genq tables but no migration history, and they differ from "
            f"this genq's schema ({shown}); migrate it by hand or start from an empty database"
        )
    command.stamp(config, "head")


def _ignorable(diff: Any) -> bool:
    # Alembic's own bookkeeping table is not part of genq's metadata.
    return isinstance(diff, tuple) and diff[0] == "remove_table" and diff[1].name == VERSION_TABLE


def _current(conn: Connection) -> str | None:
    # Read directly: a MigrationContext would log two INFO lines at every process start.
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(rows) > 1:
        raise SchemaMismatch(f"the result store has several migration heads: {sorted(rows)}")
    return str(rows[0]) if rows else None


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _describe(exc: Exception) -> str:
    # For the operator running the migration: the database's own words, first line.
    return describe(exc.__cause__ if isinstance(exc, StoreUnavailable) and exc.__cause__ else exc)
