"""Row ⇄ record conversion, kept apart so every query returns the same ``JobRecord``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Row

from schemas import ErrorInfo, HistoryEntry, JobKind, JobRecord, JobResult, JobStatus, Usage


def job_record(row: Row[Any], history: list[HistoryEntry] | None = None) -> JobRecord:
    """Build the public record of one ``jobs`` row."""
    return job_record_from_values(dict(row._mapping), history)


def job_record_from_values(
    m: Mapping[str, Any], history: list[HistoryEntry] | None = None
) -> JobRecord:
    """Build the public record from a row's column values (a row, or what was inserted)."""
    return JobRecord(
        id=m["id"],
        status=JobStatus(m["status"]),
        kind=JobKind(m["kind"]),
        model=m["model"],
        lane=m["lane"],
        priority=m["priority"],
        tenant=m["tenant"],
        request=m["request"],
        result=JobResult.model_validate(m["result"]) if m.get("result") else None,
        usage=Usage.model_validate(m["usage"]) if m.get("usage") else None,
        error=ErrorInfo.model_validate(m["error"]) if m.get("error") else None,
        attempts=m["attempts"],
        worker_id=m.get("worker_id"),
        metadata=m.get("metadata") or {},
        created_at=m["created_at"],
        started_at=m.get("started_at"),
        first_token_at=m.get("first_token_at"),
        finished_at=m.get("finished_at"),
        deadline=m.get("deadline"),
        cancel_requested=bool(m["cancel_requested"]),
        history=history,
    )


def history_entry(row: Row[Any]) -> HistoryEntry:
    m = row._mapping
    return HistoryEntry(
        from_status=JobStatus(m["from_status"]) if m["from_status"] else None,
        to_status=JobStatus(m["to_status"]),
        at=m["at"],
        worker=m["worker"],
        reason=m["reason"],
    )
