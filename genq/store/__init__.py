"""The result store: SQLAlchemy Core over SQLite (default) or PostgreSQL.

All of genq's SQL lives in this package. Jobs are read and moved through ``JobStore`` (each
state change a named compare-and-set returning a ``Transition``); dead letters, API keys,
webhooks, the outbox, metrics and retention have modules of their own. Reads never take the
SQLite writer lock.
"""

from genq.store.engine import WalCheckpointer, build_engine, create_schema
from genq.store.jobs import JobStore, NewJob, Page, StoreUnavailable
from genq.store.outbox import Deliveries
from genq.store.recovery import StaleDispatch
from genq.store.tables import utcnow
from genq.store.transitions import LapsedLease, Transition

__all__ = [
    "Deliveries",
    "JobStore",
    "LapsedLease",
    "NewJob",
    "Page",
    "StaleDispatch",
    "StoreUnavailable",
    "Transition",
    "WalCheckpointer",
    "build_engine",
    "create_schema",
    "utcnow",
]
