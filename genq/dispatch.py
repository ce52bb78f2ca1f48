"""Hand a stored job to the broker, by task name (producers never import ``tasks/``)."""

from __future__ import annotations

from typing import Any

from celery import Celery

from genq import constants as c
from genq.settings import Settings
from schemas import BrokerUnavailable, JobKind, JobRecord, celery_priority


def task_name_for(kind: JobKind) -> str:
    return c.TASK_EMBED if kind is JobKind.EMBEDDING else c.TASK_GENERATE


def send_job(
    app: Celery,
    settings: Settings,
    *,
    job_id: str,
    kind: JobKind,
    lane: str,
    priority: int,
    countdown: float | None = None,
    producer: Any = None,
    declare: bool = True,
) -> None:
    """Publish the job's task message; the Celery task id is the job id (Flower shows it).

    ``declare=False`` skips declaring the lane's queue, when an earlier message on the same
    producer declared it.
    """
    kwargs = {"job_id": job_id}
    options: dict[str, Any] = {
        "task_id": job_id,
        "queue": settings.queue_for(lane),
        "routing_key": settings.queue_for(lane),
        "priority": celery_priority(priority),
        "retry": True,
        "retry_policy": {"max_retries": 3, "interval_start": 0.1, "interval_step": 0.5},
        # What Flower shows as the task's arguments, given (Celery would saferepr() them).
        "argsrepr": "()",
        "kwargsrepr": repr(kwargs),
    }
    if not declare:
        options["declare"] = []
    if countdown:
        options["countdown"] = countdown
    if producer is not None:  # one connection for a whole batch
        options["producer"] = producer
    try:
        app.send_task(task_name_for(kind), kwargs=kwargs, **options)
    except Exception as exc:  # kombu/redis raise many types; convert at the boundary
        raise BrokerUnavailable(
            f"could not hand job {job_id} to the broker ({exc.__class__.__name__}); try again"
        ) from exc


def send_record(
    app: Celery,
    settings: Settings,
    record: JobRecord,
    *,
    countdown: float | None = None,
    producer: Any = None,
    declare: bool = True,
) -> None:
    """``send_job`` for a stored job's record."""
    send_job(
        app,
        settings,
        job_id=record.id,
        kind=record.kind,
        lane=record.lane,
        priority=record.priority,
        countdown=countdown,
        producer=producer,
        declare=declare,
    )
