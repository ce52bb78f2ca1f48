"""Alembic environment: run by :mod:`genq.store.migrate` with a connection it opened."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from genq.store.tables import metadata

# Any constant works; it only has to be the same in every genq process.
POSTGRES_MIGRATION_LOCK = 0x67656E71


def run_migrations_online() -> None:
    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Entry points start together and each upgrades: one migrates, the others wait.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": POSTGRES_MIGRATION_LOCK}
            )
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("genq runs migrations online only: `genq db upgrade`")
run_migrations_online()
