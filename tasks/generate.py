"""The LLM tasks. Thin: decode the message, run the job, let ``execution`` do the rest."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from genq import constants as c
from tasks.execution import run_job
from workers.context import context_for


@shared_task(name=c.TASK_GENERATE, bind=True, acks_late=True, ignore_result=True)
def generate(self: Task, job_id: Any = None, **unexpected: Any) -> str:
    """Run a chat or completion job by id (the request lives in the store)."""
    return run_job(context_for(self.app), job_id)


@shared_task(name=c.TASK_EMBED, bind=True, acks_late=True, ignore_result=True)
def embed(self: Task, job_id: Any = None, **unexpected: Any) -> str:
    """Run an embedding job by id."""
    return run_job(context_for(self.app), job_id)
