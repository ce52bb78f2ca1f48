"""What the store raises when the database fails it. Callers catch these, never SQLAlchemy's.

Every engine ``build_engine`` makes turns the database's operational failures (it cannot be
reached, the connection broke, a SQLite file or directory is gone, a lock wait ran out) into
:class:`StoreUnavailable` at the one place SQLAlchemy reports them, its ``handle_error`` event;
the original error stays chained as ``__cause__`` for the logs. The one failure that event never
sees, no free connection in the pool within its timeout, is turned at the pool
(:class:`StorePool`). What remains a SQLAlchemy error
is a mistake in genq's SQL (a constraint the store did not expect, bad SQL): a bug to fix, not
a condition to retry.
"""

from __future__ import annotations

from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import InterfaceError, InternalError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import PoolProxiedConnection, QueuePool

from schemas import GenqError
from schemas.errors import ErrorCode

__all__ = ["StorePool", "StoreUnavailable", "describe", "unavailable_instead"]

# PEP 249's classes for failures of the database or the link to it, not of the statement.
OPERATIONAL_ERRORS = (OperationalError, InterfaceError, InternalError)


class StoreUnavailable(GenqError):
    """The result store could not be reached or could not do its work; try again later."""

    code = ErrorCode.INTERNAL
    retryable = True


def describe(exc: BaseException) -> str:
    """The error's class and the first line of its text (no statement, no parameters)."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(cause).__name__}: {first}" if first else type(cause).__name__


def unavailable_instead(context: ExceptionContext) -> None:
    """SQLAlchemy's ``handle_error`` hook: raise ``StoreUnavailable`` for an operational
    failure, leave every other error as it is.

    Not during a pool's pre-ping: SQLAlchemy reads the disconnect there itself and reconnects.
    """
    if context.is_pre_ping:
        return
    failed = context.sqlalchemy_exception
    if isinstance(failed, OPERATIONAL_ERRORS) or (failed is not None and context.is_disconnect):
        # The class only: the message may reach an HTTP client; the cause, chained, has it all.
        cause = type(context.original_exception).__name__
        raise StoreUnavailable(f"result store unavailable: {cause}") from failed


class StorePool(QueuePool):
    """SQLAlchemy's ``QueuePool`` whose checkout timeout (every connection in use for
    ``pool_timeout`` seconds: a store that cannot keep up) raises ``StoreUnavailable``. The
    pool raises it before any DBAPI call, so ``handle_error`` does not see it."""

    # Log as the pool it extends (SQLAlchemy's own logger, quiet unless asked), not as genq.*.
    _sqla_logger_namespace = "sqlalchemy.pool.impl.QueuePool"

    def connect(self) -> PoolProxiedConnection:
        try:
            return super().connect()
        except PoolTimeout as exc:
            raise StoreUnavailable(
                "result store unavailable: no free database connection (all busy)"
            ) from exc
