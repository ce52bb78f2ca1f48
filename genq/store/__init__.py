"""The result store: SQLAlchemy Core over SQLite (default) or PostgreSQL."""

from genq.store.engine import WalCheckpointer, build_engine, create_schema
from genq.store.jobs import JobStore, NewJob, Page, StoreUnavailable, utcnow

__all__ = [
    "JobStore",
    "NewJob",
    "Page",
    "StoreUnavailable",
    "WalCheckpointer",
    "build_engine",
    "create_schema",
    "utcnow",
]
