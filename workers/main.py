"""Worker and beat entry points: build the app from settings and run Celery in the foreground."""

from __future__ import annotations

import socket

from celery.signals import worker_process_shutdown, worker_shutdown

from genq import constants as c
from genq.logs import configure_logging
from genq.settings import Settings
from genq.store import build_engine, create_schema
from workers.app import create_app
from workers.context import close_context

ROLE_QUEUES = {"webhooks": c.WEBHOOK_QUEUE, "maintenance": c.MAINTENANCE_QUEUE}


def worker_queues(settings: Settings, lanes: list[str] | None, extra: list[str]) -> list[str]:
    """Queue names a worker consumes: its lanes, plus ``webhooks``/``maintenance`` if asked."""
    names = [settings.queue_for(lane) for lane in (lanes if lanes is not None else settings.lanes)]
    for role in extra:
        if role not in ROLE_QUEUES:
            raise ValueError(f"unknown queue role {role!r}; use one of {sorted(ROLE_QUEUES)}")
        names.append(ROLE_QUEUES[role])
    if not names:
        raise ValueError("a worker needs at least one lane or queue role")
    return names


def run_worker(
    settings: Settings,
    *,
    queues: list[str],
    concurrency: int | None = None,
    pool: str = "prefork",
    name: str | None = None,
    loglevel: str = "INFO",
) -> None:
    """Run a Celery worker in the foreground. Concurrency defaults to the runtime's slots."""
    configure_logging(settings)
    create_schema(build_engine(settings.store_url))
    app = create_app(settings)
    worker_process_shutdown.connect(lambda **_: close_context(), weak=False)
    worker_shutdown.connect(lambda **_: close_context(), weak=False)
    argv = [
        "worker",
        f"--queues={','.join(queues)}",
        f"--concurrency={concurrency or settings.runtime_slots}",
        f"--pool={pool}",
        f"--hostname={name or 'genq'}@{socket.gethostname()}",
        f"--loglevel={loglevel}",
        "--task-events",
        "--without-gossip",
        "--without-mingle",
    ]
    app.worker_main(argv=argv)


def run_beat(settings: Settings, *, loglevel: str = "INFO") -> None:
    """Run Celery beat: it sends the sweep to ``genq.maintenance`` every sweep interval."""
    configure_logging(settings)
    app = create_app(settings)
    schedule = settings.data_dir / "beat-schedule"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app.start(argv=["beat", f"--loglevel={loglevel}", f"--schedule={schedule}"])
