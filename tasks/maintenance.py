"""Periodic maintenance task, sent by beat to ``genq.maintenance``."""

from __future__ import annotations

from celery import Task, shared_task

from genq import constants as c
from tasks.sweep import run_sweep
from workers.context import context_for


@shared_task(name=c.TASK_SWEEP, bind=True, ignore_result=True)
def sweep(self: Task) -> dict[str, int]:
    """Recover lapsed leases, re-send lost retries, expire overdue jobs, flush outboxes."""
    return vars(run_sweep(context_for(self.app)))
