"""Reply outbox rows are claimed before publishing (``claimed_at``), so the worker that settled a
job and a concurrent sweep never both publish the same reply.

Revision ID: 0003_reply_claims
Revises: 0002_webhooks
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_reply_claims"
down_revision: str | None = "0002_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reply_outbox") as batch:
        batch.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reply_outbox") as batch:
        batch.drop_column("claimed_at")
