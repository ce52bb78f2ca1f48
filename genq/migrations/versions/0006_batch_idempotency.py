"""Batches remember the ``Idempotency-Key`` they were created with (unique per tenant), so a
retried ``POST /v1/batches`` gets its batch back instead of queueing every line twice.

Revision ID: 0006_batch_idempotency
Revises: 0005_files_batches
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_batch_idempotency"
down_revision: str | None = "0005_files_batches"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(length=255), nullable=True))
        batch.create_unique_constraint(
            "uq_batches_tenant_idempotency", ["tenant", "idempotency_key"]
        )


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_constraint("uq_batches_tenant_idempotency", type_="unique")
        batch.drop_column("idempotency_key")
