"""The result store: SQLAlchemy Core over SQLite (default) or PostgreSQL.

All of genq's SQL lives in this package. Jobs are read and moved through ``JobStore`` (each
state change a named compare-and-set returning a ``Transition``); dead letters, API keys,
webhooks, the outbox, metrics and retention have modules of their own. Reads never take the
SQLite writer lock.

Nothing outside this package (and its migrations) imports SQLAlchemy (``.importlinter`` says
so): callers hold an ``Engine`` from ``build_engine`` only to hand it back to the store, and
catch ``StoreUnavailable`` when the database fails (``genq.store.errors``).
"""

from sqlalchemy import Engine

from genq.store.engine import WalCheckpointer, build_engine, create_schema
from genq.store.errors import StoreUnavailable
from genq.store.jobs import JobStore, NewJob, Page
from genq.store.outbox import Deliveries
from genq.store.recovery import StaleDispatch
from genq.store.tables import utcnow
from genq.store.transitions import LapsedLease, Transition

__all__ = [
    "Deliveries",
    "Engine",
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
