"""The compare-and-set behind every state change: ``UPDATE … WHERE id=? AND status IN (…)`` and
the history row saying which state the job left, in the caller's transaction.

When several source states are allowed, the state the job left is captured by the statement
that changes it. PostgreSQL: ``UPDATE jobs … FROM (SELECT … FOR UPDATE) AS old … RETURNING
old.status``; a plain read before the update could, under READ COMMITTED, see a state that a
concurrent writer changed before the update ran. SQLite lets no other writer in between
(genq opens every writing transaction ``IMMEDIATE``), and its ``RETURNING`` cannot name another
table, so there the state is read first in the same transaction.

On PostgreSQL the history row is written by the same statement (``WITH moved AS (UPDATE …
RETURNING …), history AS (INSERT INTO job_history SELECT … FROM moved) SELECT * FROM moved``):
one round trip where two were, on the path every job takes twice. SQLite has no data-modifying
``WITH``, so there the history row is a second statement.

Statements are built once per shape and executed with parameters: a worker runs the same few
for every job, and building one (with its cache key) costs more than executing it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Executable,
    FromClause,
    Row,
    String,
    Text,
    bindparam,
    insert,
    literal_column,
    select,
    update,
)

from genq.store.tables import job_history, jobs
from schemas import JobStatus


class Guard(StrEnum):
    """A condition a transition adds to the compare-and-set, with the parameters it reads."""

    HELD_BY = "held_by"  # worker_id = :holder
    LAPSED = "lapsed"  # lease_expires_at < :now, still :lapsed_worker's with :lapsed_crashes
    ON_NODE = "on_node"  # worker_id LIKE :node_pattern (escaped with LIKE_ESCAPE)


def _guard_conditions(guard: Guard, t: FromClause) -> list[ColumnElement[bool]]:
    if guard is Guard.HELD_BY:
        return [t.c.worker_id == bindparam("holder")]
    if guard is Guard.LAPSED:
        return [
            t.c.lease_expires_at < bindparam("now", type_=jobs.c.lease_expires_at.type),
            t.c.worker_id == bindparam("lapsed_worker"),
            t.c.crashes == bindparam("lapsed_crashes"),
        ]
    return [t.c.worker_id.like(bindparam("node_pattern"), escape=LIKE_ESCAPE)]


LIKE_ESCAPE = "\\"


def like_prefix(prefix: str) -> str:
    """A LIKE pattern (escaped with ``LIKE_ESCAPE``) matching strings that start with
    ``prefix``: a host name may hold ``_``, which LIKE would read as any character."""
    for char in (LIKE_ESCAPE, "%", "_"):
        prefix = prefix.replace(char, LIKE_ESCAPE + char)
    return prefix + "%"


Sources = frozenset[JobStatus]
Guards = frozenset[Guard]


def compare_and_set(
    conn: Connection,
    job_id: str,
    target: JobStatus,
    *,
    sources: Sources,
    values: Mapping[str, Any],
    guards: Guards = frozenset(),
    params: Mapping[str, Any] | None = None,
    worker: str | None,
    reason: str | None,
    at: datetime,
) -> Row[Any] | None:
    """Move ``job_id`` from one of ``sources`` to ``target`` (setting ``values``, plain values
    only) if every guard holds; the updated row, or None if the job was not in such a state.
    """
    if not sources:
        return None
    columns = tuple(sorted(values))
    bind = {"job_id": job_id, **(params or {}), **{f"set_{k}": v for k, v in values.items()}}
    source: JobStatus | None = next(iter(sources)) if len(sources) == 1 else None
    if conn.dialect.name != "sqlite":  # PostgreSQL: the move and its history row in one
        bind.update(history_params(source, target, at=at, worker=worker, reason=reason))
        statement = _update_with_history(sources, guards, columns, one_source=source is not None)
        return conn.execute(statement, bind).first()
    if source is None:
        current = conn.execute(_current_status(sources, guards), bind).scalar()
        if current is None:
            return None
        source = JobStatus(current)
    row = conn.execute(_update(frozenset({source}), guards, columns), bind).first()
    if row is None:
        return None
    insert_history(conn, job_id, source, target, at=at, worker=worker, reason=reason)
    return row


def insert_history(
    conn: Connection,
    job_id: str,
    source: JobStatus | None,
    target: JobStatus,
    *,
    at: datetime,
    worker: str | None,
    reason: str | None,
) -> None:
    conn.execute(
        _HISTORY_INSERT,
        {
            "job_id": job_id,
            "from_status": source.value if source else None,
            "to_status": target.value,
            "at": at,
            "worker": worker,
            "reason": reason,
        },
    )


_HISTORY_INSERT = job_history.insert()


def history_params(
    source: JobStatus | None,
    target: JobStatus,
    *,
    at: datetime,
    worker: str | None,
    reason: str | None,
) -> dict[str, Any]:
    """The parameters of ``with_history``'s history row (a move with several possible sources
    takes its from-state from the statement instead)."""
    return {
        "h_from": source.value if source else None,
        "h_to": target.value,
        "h_at": at,
        "h_worker": worker,
        "h_reason": reason,
    }


def with_history(moved: Executable, from_column: str | None = None) -> Executable:
    """PostgreSQL: ``moved`` (a statement changing one jobs row, ``RETURNING`` it) and that
    job's history row as one statement, returning what ``moved`` returns. The row's from-state
    is the ``from_column`` that ``moved`` returns, or the ``h_from`` parameter; the rest is
    ``h_to``, ``h_at``, ``h_worker`` and ``h_reason`` (``history_params``)."""
    cte = moved.cte("moved")  # type: ignore[attr-defined]
    source = cte.c[from_column] if from_column else bindparam("h_from", type_=String)
    history = (
        insert(job_history)
        .from_select(
            ["job_id", "from_status", "to_status", "at", "worker", "reason"],
            select(
                cte.c.id,
                source,
                bindparam("h_to", type_=String),
                bindparam("h_at", type_=job_history.c.at.type),
                bindparam("h_worker", type_=String),
                bindparam("h_reason", type_=Text),
            ),
        )
        .cte("history")
    )
    return select(cte).add_cte(history)


@functools.cache
def _update_with_history(
    sources: Sources, guards: Guards, columns: tuple[str, ...], one_source: bool
) -> Executable:
    if one_source:
        return with_history(_update(sources, guards, columns))
    return with_history(_update_locked(sources, guards, columns), "from_status")


def _status_in(t: FromClause, sources: Sources) -> ColumnElement[bool]:
    # The states are our own constants: inlined, so the statement has no expanding parameter.
    return t.c.status.in_([literal_column(f"'{s.value}'") for s in sorted(sources)])


def _where(t: FromClause, sources: Sources, guards: Guards) -> list[ColumnElement[bool]]:
    where = [t.c.id == bindparam("job_id"), _status_in(t, sources)]
    for guard in sorted(guards):
        where += _guard_conditions(guard, t)
    return where


def _set(columns: tuple[str, ...]) -> dict[str, Any]:
    return {k: bindparam(f"set_{k}", type_=jobs.c[k].type) for k in columns}


@functools.cache
def _update(sources: Sources, guards: Guards, columns: tuple[str, ...]) -> Executable:
    return (
        update(jobs)
        .where(*_where(jobs, sources, guards))
        .values(**_set(columns))
        .returning(*jobs.c)
    )


@functools.cache
def _update_locked(sources: Sources, guards: Guards, columns: tuple[str, ...]) -> Executable:
    locked = jobs.alias("locked")
    old = (
        select(locked.c.id, locked.c.status)
        .where(*_where(locked, sources, guards))
        .with_for_update()
        .subquery("old")
    )
    return (
        update(jobs)
        .where(jobs.c.id == old.c.id)
        .values(**_set(columns))
        .returning(*jobs.c, old.c.status.label("from_status"))
    )


@functools.cache
def _current_status(sources: Sources, guards: Guards) -> Executable:
    return select(jobs.c.status).where(*_where(jobs, sources, guards))
