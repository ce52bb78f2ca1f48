"""A queued job's dispatch-by time gets its own column (``dispatch_by``); ``lease_expires_at``
is a running job's lease only. Queued jobs' times move over.

Revision ID: 0004_dispatch_by
Revises: 0003_reply_claims
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_dispatch_by"
down_revision: str | None = "0003_reply_claims"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

jobs = sa.table(
    "jobs",
    sa.column("status", sa.String),
    sa.column("lease_expires_at", sa.DateTime(timezone=True)),
    sa.column("dispatch_by", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("dispatch_by", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_jobs_status_dispatch", ["status", "dispatch_by"], unique=False)
    op.execute(
        jobs.update()
        .where(jobs.c.status == "queued")
        .values(dispatch_by=jobs.c.lease_expires_at, lease_expires_at=None)
    )


def downgrade() -> None:
    op.execute(
        jobs.update().where(jobs.c.status == "queued").values(lease_expires_at=jobs.c.dispatch_by)
    )
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_status_dispatch")
        batch.drop_column("dispatch_by")
