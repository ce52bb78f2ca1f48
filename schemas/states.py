"""The job state machine: an enum and one transition guard, pure."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    DEAD_LETTERED = "dead_lettered"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
        JobStatus.EXPIRED,
        JobStatus.DEAD_LETTERED,
    }
)

_ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset(
        {JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.EXPIRED, JobStatus.DEAD_LETTERED}
    ),
    JobStatus.RUNNING: frozenset(
        {
            JobStatus.SUCCEEDED,
            JobStatus.FAILED,
            JobStatus.CANCELLED,
            JobStatus.EXPIRED,
            JobStatus.DEAD_LETTERED,
            JobStatus.QUEUED,  # retry or lease recovery
        }
    ),
    # An operator's requeue is the only way out of a terminal state.
    JobStatus.DEAD_LETTERED: frozenset({JobStatus.QUEUED}),
}


def can_transition(source: JobStatus, target: JobStatus) -> bool:
    """True when ``source → target`` is a legal edge of the job state machine."""
    return target in _ALLOWED.get(source, frozenset())


def sources_for(target: JobStatus) -> frozenset[JobStatus]:
    """Every state from which ``target`` may be reached: the store's compare-and-set set."""
    return frozenset(src for src, targets in _ALLOWED.items() if target in targets)
