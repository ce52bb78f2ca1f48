"""The result store's tables (SQLAlchemy Core). Alembic migrations mirror this metadata."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """Now, as the store keeps every time: timezone-aware UTC."""
    return datetime.now(UTC)


metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant", String(64), nullable=False, default="default"),
    Column("status", String(16), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("model", String(128), nullable=False),
    Column("lane", String(32), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("request", JSON, nullable=False),
    Column("result", JSON),
    Column("usage", JSON),
    Column("error", JSON),
    Column("metadata", JSON, nullable=False, default=dict),
    Column("attempts", Integer, nullable=False, default=0),
    Column("crashes", Integer, nullable=False, default=0),
    Column("worker_id", String(255)),
    Column("reply_to", String(200)),
    Column("webhook_url", Text),
    Column("webhook_secret", String(255)),
    Column("idempotency_key", String(255)),
    Column("request_hash", String(64)),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("first_token_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("deadline", UTCDateTime),
    # A running job's lease: its worker renews it; once it lapses the sweep requeues the job.
    Column("lease_expires_at", UTCDateTime),
    # A queued job's dispatch-by time: if no worker started it by then (its message was lost
    # with a producer or a broker), the sweep sends it again.
    Column("dispatch_by", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("tenant", "idempotency_key", name="uq_jobs_tenant_idempotency"),
    Index("ix_jobs_tenant_created", "tenant", "created_at", "id"),
    Index("ix_jobs_status_lease", "status", "lease_expires_at"),
    Index("ix_jobs_status_dispatch", "status", "dispatch_by"),
    Index("ix_jobs_status_finished", "status", "finished_at"),
)

job_history = Table(
    "job_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(36), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("from_status", String(16)),
    Column("to_status", String(16), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("worker", String(255)),
    Column("reason", Text),
    Index("ix_job_history_job", "job_id", "id"),
)

# Terminal records waiting to be published to a producer's reply queue.
reply_outbox = Table(
    "reply_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(36), nullable=False),
    Column("queue", String(200), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("published_at", UTCDateTime),
    # Set by whoever is publishing; a claim older than reply_claim_seconds is a crashed one.
    Column("claimed_at", UTCDateTime),
    Index("ix_reply_outbox_pending", "published_at", "id"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("job_id", String(36), index=True),
    Column("reason", String(64), nullable=False),
    Column("error", JSON),
    Column("attempts", Integer, nullable=False, default=0),
    Column("raw_body", LargeBinary),
    Column("created_at", UTCDateTime, nullable=False),
    Column("requeued_at", UTCDateTime),
    Column("requeued_by", String(255)),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("name", String(128)),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(128), nullable=False, unique=True),
    Column("admin", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant", String(64), nullable=False, index=True),
    Column("url", Text, nullable=False),
    # [{"secret": "whsec_…", "expires_at": iso|None}], newest first: rotation overlap window.
    Column("secrets", JSON, nullable=False),
    Column("events", JSON, nullable=False),
    Column("thin", Boolean, nullable=False, default=False),
    Column("disabled_at", UTCDateTime),
    Column("disabled_reason", Text),
    Column("created_at", UTCDateTime, nullable=False),
)

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", String(64), primary_key=True),  # the stable webhook-id
    Column("job_id", String(36), nullable=False, index=True),
    Column("tenant", String(64), nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("event_id", String(64), ForeignKey("webhook_events.id"), nullable=False, index=True),
    Column("endpoint_id", String(36)),
    Column("url", Text, nullable=False),
    Column("secrets", JSON, nullable=False),
    Column("thin", Boolean, nullable=False, default=False),
    Column("status", String(16), nullable=False),  # pending | succeeded | exhausted | disabled
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime),
    # When a task message for the next attempt was sent: the sweep re-sends only after a lease.
    Column("dispatched_at", UTCDateTime),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", String(36), ForeignKey("webhook_deliveries.id"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("status_code", Integer),
    Column("latency_ms", Float),
    Column("error", Text),
    Column("response_excerpt", Text),
    Index("ix_webhook_attempts_delivery", "delivery_id", "id"),
)

# Files (``/v1/files``): the bytes live in the store, so every host of a deployment can read
# them. An upload is written chunk by chunk (one row per chunk, each its own transaction) and is
# listed only once complete (``status`` ``processed``); ``uploading`` rows are in flight or
# were left by a crash, and are purged later.
files = Table(
    "files",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("filename", String(255), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("bytes", BigInteger, nullable=False, default=0),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_files_tenant_created", "tenant", "created_at", "id"),
    Index("ix_files_status_created", "status", "created_at"),
)

file_chunks = Table(
    "file_chunks",
    metadata,
    Column("file_id", String(36), ForeignKey("files.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
)

# Batches (``/v1/batches``): one row per batch, one ``batch_lines`` row per input line linking
# its ``custom_id`` to the genq job that answers it. ``ends_as`` is the final status decided
# when no more lines may start (completed, cancelled or expired); counts are stored when the
# batch finishes and counted from its jobs before.
batches = Table(
    "batches",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("ends_as", String(16)),
    Column("endpoint", String(64), nullable=False),
    Column("input_file_id", String(36), nullable=False),
    Column("completion_window", String(8), nullable=False),
    Column("metadata", JSON),
    Column("priority", Integer, nullable=False),
    Column("errors", JSON),
    Column("output_file_id", String(36)),
    Column("error_file_id", String(36)),
    Column("total", Integer, nullable=False, default=0),
    Column("completed", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("in_progress_at", UTCDateTime),
    Column("finalizing_at", UTCDateTime),
    Column("completed_at", UTCDateTime),
    Column("failed_at", UTCDateTime),
    Column("expired_at", UTCDateTime),
    Column("cancelling_at", UTCDateTime),
    Column("cancelled_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    # A create retried with the same ``Idempotency-Key`` gets this batch back, not a second one.
    Column("idempotency_key", String(255)),
    UniqueConstraint("tenant", "idempotency_key", name="uq_batches_tenant_idempotency"),
    Index("ix_batches_tenant_created", "tenant", "created_at", "id"),
    Index("ix_batches_status", "status"),
)

batch_lines = Table(
    "batch_lines",
    metadata,
    Column("batch_id", String(36), ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True),
    Column("line", Integer, primary_key=True, autoincrement=False),
    Column("custom_id", String(512), nullable=False),
    # No foreign key: retention may purge a finished job long after its batch wrote its output.
    Column("job_id", String(36), nullable=False),
    Index("ix_batch_lines_job", "job_id", unique=True),
)
