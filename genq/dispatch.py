"""Hand a stored job to the broker, by task name (producers never import ``tasks/``)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import redis
from celery import Celery

from genq import constants as c
from genq.fleet.backlog import Waiting
from genq.fleet.config import fleet_dispatch
from genq.fleet.dispatcher import Dispatcher, dispatcher_for
from genq.fleet.fairness import estimate_cost
from genq.settings import Settings
from schemas import BrokerUnavailable, JobKind, JobRecord, celery_priority

log = logging.getLogger(__name__)


def task_name_for(kind: JobKind) -> str:
    return c.TASK_EMBED if kind is JobKind.EMBEDDING else c.TASK_GENERATE


def message_priority(settings: Settings, priority: int) -> int:
    """The task message's priority for genq ``priority`` (9 most urgent) on this broker:
    RabbitMQ delivers the highest AMQP priority first, kombu's Redis transport the lowest."""
    return priority if settings.broker_is_amqp else celery_priority(priority)


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
    """Hand a job on to run by what its message needs (the sweep's re-send of a job that may
    have lost its message): into the runtime fleet's backlog when genq dispatches through it
    (as it was, if it is still waiting there), else straight to the broker. ``send_record``
    hands on a stored job with all the backlog keeps of it."""
    if fleet_dispatch(settings):
        waiting = Waiting(
            job_id=job_id, model="", tenant=tenant, priority=priority, kind=kind.value, lane=lane
        )
        fleet_dispatcher(app, settings).enqueue(waiting, countdown=countdown or 0.0)
        return
    publish_job(
        app,
        settings,
        job_id=job_id,
        kind=kind,
        tenant=tenant,
        lane=lane,
        priority=priority,
        countdown=countdown,
        producer=producer,
        declare=declare,
    )


def fleet_dispatcher(app: Celery, settings: Settings) -> Dispatcher:
    """This process's fleet dispatcher, publishing through ``publish_job``."""
    return dispatcher_for(app, settings, publish_job)


def publish_job(
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
    slot: dict[str, Any] | None = None,
) -> None:
    """Publish the job's task message; the Celery task id is the job id (Flower shows it).

    ``declare=False`` skips declaring the lane's queue, when an earlier message on the same
    producer declared it. ``slot``: the fleet slot the dispatcher holds for the job (endpoint,
    token, ...), passed in the task's kwargs.
    """
    kwargs: dict[str, Any] = {"job_id": job_id}
    if slot is not None:
        kwargs["slot"] = slot
    options: dict[str, Any] = {
        "task_id": job_id,
        "queue": settings.queue_for(lane),
        "routing_key": settings.queue_for(lane),
        "priority": message_priority(settings, priority),
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
        if settings.broker_is_amqp and settings.rabbitmq_quorum:
            # Celery's native delayed delivery (quorum queues) counts whole seconds and
            # refuses a delay that rounds down to 0.
            options["countdown"] = max(1, math.ceil(countdown))
    if producer is not None:  # one connection for a whole batch
        options["producer"] = producer
    try:
        app.send_task(task_name_for(kind), kwargs=kwargs, **options)
    except Exception as exc:  # kombu/redis raise many types; convert at the boundary
        raise BrokerUnavailable(
            f"could not hand job {job_id} to the broker ({exc.__class__.__name__}); try again"
        ) from exc


def enqueue_records(app: Celery, settings: Settings, records: Sequence[JobRecord]) -> None:
    """``send_record`` for new stored jobs when genq dispatches through the fleet: into its
    backlog in one round trip (``Dispatcher.enqueue_many``)."""
    fleet_dispatcher(app, settings).enqueue_many([_waiting(r, settings) for r in records])


def withdraw(app: Celery, settings: Settings, record: JobRecord) -> None:
    """A queued job that will never run (cancelled, expired): out of the fleet's backlog (or
    its delayed set) now, so it takes no slot on its way to a worker that would only skip it,
    and no longer counts as waiting. Best effort: one left behind (Redis away) is released and
    skipped as before."""
    if not fleet_dispatch(settings):
        return
    backlog = fleet_dispatcher(app, settings).backlog
    try:
        backlog.withdraw(record.model or settings.default_model, record.tenant, record.id)
    except redis.RedisError as exc:
        log.warning("job %s stays in the backlog until released: %s", record.id, exc)


def _waiting(record: JobRecord, settings: Settings) -> Waiting:
    """What the fleet's backlog keeps of a stored job while it waits."""
    return Waiting(
        job_id=record.id,
        model=record.model or "",
        tenant=record.tenant,
        priority=record.priority,
        kind=record.kind.value,
        lane=record.lane,
        estimate=estimate_cost(record.request, settings),
        session=session_key(record.request),
        deadline=record.deadline.timestamp() if record.deadline is not None else None,
    )


def send_record(
    app: Celery,
    settings: Settings,
    record: JobRecord,
    *,
    countdown: float | None = None,
    producer: Any = None,
    declare: bool = True,
) -> None:
    """Hand a stored job on to run: into the runtime fleet's backlog when genq dispatches
    through it (the dispatcher publishes it once it holds a slot for it:
    ``genq.fleet.dispatcher``), else straight to the broker."""
    if fleet_dispatch(settings):
        fleet_dispatcher(app, settings).enqueue(
            _waiting(record, settings), countdown=countdown or 0.0
        )
        return
    publish_job(
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


def session_key(request: Any) -> str | None:
    """A job's session/prefix key (``metadata.session`` or ``metadata.prefix_key``): work
    sharing one prefers the endpoint that ran the last of it (its prompt cache is warm)."""
    if not isinstance(request, dict):
        return None
    metadata = request.get("metadata") or {}
    key = (
        metadata.get("session") or metadata.get("prefix_key")
        if isinstance(metadata, dict)
        else None
    )
    return str(key)[:200] if key else None
