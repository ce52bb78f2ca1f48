"""Hand a stored job to the broker, by task name (producers never import ``tasks/``)."""

from __future__ import annotations

from typing import Any

from celery import Celery

from genq import constants as c
from genq.settings import Settings
from schemas import BrokerUnavailable, JobKind, JobRecord, celery_priority


def task_name_for(kind: JobKind) -> str:
    return c.TASK_EMBED if kind is JobKind.EMBEDDING else c.TASK_GENERATE


def task_kwargs_repr(job_id: str, *, tenant: str, lane: str, priority: int) -> str:
    """What Flower shows (and searches) as the task's kwargs: the job id the task gets, plus
    the job's tenant, lane and genq priority, which it reads from the store. A dict literal,
    so Flower's ``kwargs:tenant=acme`` search can parse it."""
    return repr({"job_id": job_id, "tenant": tenant, "lane": lane, "priority": priority})


def send_job(
    app: Celery,
    settings: Settings,
    *,
    job_id: str,
    kind: JobKind,
    tenant: str,
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
        # What Flower shows as the task's arguments, travelling in this message's headers
        # (Celery would saferepr() the real ones): the job findable by tenant, lane, priority.
        "argsrepr": "()",
        "kwargsrepr": task_kwargs_repr(job_id, tenant=tenant, lane=lane, priority=priority),
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
        tenant=record.tenant,
        lane=record.lane,
        priority=record.priority,
        countdown=countdown,
        producer=producer,
        declare=declare,
    )
