"""The LLM tasks. Thin: decode the message, run the job, let ``execution`` do the rest."""

from __future__ import annotations

from typing import Any

import redis
from celery import Task, shared_task

from genq import constants as c
from genq.store import StoreUnavailable
from tasks.execution import run_job
from workers.context import context_for

# The store or Redis failing under us (refused, reset, or not answering within its socket
# timeout): try the message again shortly rather than ack it away (a job already started is
# recovered by its lease).
INFRASTRUCTURE_ERRORS = (StoreUnavailable, redis.ConnectionError, redis.TimeoutError)
INFRASTRUCTURE_RETRY_SECONDS = 5


def _run(task: Task, job_id: Any, slot: Any = None) -> str:
    try:
        return run_job(context_for(task.app), job_id, slot)
    except INFRASTRUCTURE_ERRORS as exc:
        raise task.retry(exc=exc, countdown=INFRASTRUCTURE_RETRY_SECONDS, max_retries=None) from exc


@shared_task(name=c.TASK_GENERATE, bind=True, acks_late=True, ignore_result=True)
def generate(self: Task, job_id: Any = None, slot: Any = None, **unexpected: Any) -> str:
    """Run a chat or completion job by id (the request lives in the store); ``slot``: the
    runtime fleet's slot the dispatcher holds for it."""
    return _run(self, job_id, slot)


@shared_task(name=c.TASK_EMBED, bind=True, acks_late=True, ignore_result=True)
def embed(self: Task, job_id: Any = None, slot: Any = None, **unexpected: Any) -> str:
    """Run an embedding job by id."""
    return _run(self, job_id, slot)
