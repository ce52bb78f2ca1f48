"""Worker and beat entry points: build the app from settings and run Celery in the foreground."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from datetime import timedelta

from celery import Celery
from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)

from genq import constants as c
from genq.dispatch import send_record
from genq.fleet.config import fleet_concurrency, fleet_dispatch
from genq.logs import (
    bind_task_context,
    clear_job_context,
    configure_logging,
    json_worker_notices,
)
from genq.rabbitmq import prepare_worker_broker
from genq.settings import Settings
from genq.store import JobStore, build_engine, utcnow
from genq.store.migrate import upgrade_database
from schemas import GenqError
from workers.app import create_worker_app
from workers.beat import run_sweeps
from workers.context import close_context, start_fleet_side

log = logging.getLogger(__name__)

ROLE_QUEUES = {"webhooks": c.WEBHOOK_QUEUE, "maintenance": c.MAINTENANCE_QUEUE}
# Touched by beat after each turn of its sweep loop; compose's health check reads its age.
BEAT_HEARTBEAT_FILE = "beat-heartbeat"


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


def ensure_cold_sigterm() -> None:
    """Have SIGTERM start Celery's cold shutdown (what SIGQUIT does) instead of its warm one.

    The warm shutdown, Celery's SIGTERM default, waits for every running task however long it
    takes (an LLM job can take hours). The cold one, with genq's ``worker_soft_shutdown_timeout``
    set, first gives running jobs that grace period to finish (Celery's "soft shutdown"), then
    cancels them, and ``run_worker`` hands them back to the queue. billiard reads
    ``REMAP_SIGTERM`` once, when first imported: if it read it unset, this re-executes the
    process (``python -m genq`` with the same arguments) with it set; in the new process it
    returns at once. ``genq worker`` sets it before anything imports billiard (see
    ``genq.cli.services``), so it never pays the second start.
    """
    # What Celery's worker read from billiard: it installs the SIGTERM handler by it.
    from celery.apps import worker as celery_worker

    if celery_worker.REMAP_SIGTERM == "SIGQUIT":
        return
    os.environ["REMAP_SIGTERM"] = "SIGQUIT"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "genq", *sys.argv[1:]])


def hand_back_running(app: Celery, settings: Settings, node: str) -> int:
    """Requeue the jobs this node's processes still hold (called as the worker shuts down).

    kombu restores their messages on the cold shutdown, but another worker may have taken
    one and skipped it while the job still looked running, so each job is also re-sent
    (a duplicate is harmless); the dispatch-by time covers a send that fails.
    """
    store = JobStore(build_engine(settings.store_url))
    handed = store.hand_back(node, dispatch_by=utcnow() + timedelta(seconds=settings.lease_seconds))
    for record in handed:
        try:
            send_record(app, settings, record)
        except GenqError:
            log.warning("could not re-send %s; the sweep will", record.id)
    store.engine.dispose()
    if handed:
        log.warning("handed %d running job(s) back to the queue on shutdown", len(handed))
    return len(handed)


def _quiet(settings: Settings) -> list[str]:
    # With JSON logs every line of output is a JSON object: no banner.
    return ["--quiet"] if settings.log_json else []


def run_worker(
    settings: Settings,
    *,
    queues: list[str],
    concurrency: int | None = None,
    pool: str = "prefork",
    name: str | None = None,
    loglevel: str = "INFO",
) -> None:
    """Run a Celery worker in the foreground. Concurrency defaults to the runtime's slots (the
    fleet's, summed)."""
    configure_logging(settings)
    upgrade_database(settings.store_url)
    app = create_worker_app(settings)
    if settings.broker_is_amqp:  # its queues as genq declares them, or a clear error
        prepare_worker_broker(app, settings)
    if not any(q in {settings.queue_for(lane) for lane in settings.lanes} for q in queues):
        # Webhook/maintenance-only workers have no priorities to protect: let them prefetch.
        app.conf.worker_disable_prefetch = False
        app.conf.worker_prefetch_multiplier = 4
    node = f"{name or 'genq'}-{os.getpid()}@{settings.hostname}"
    app.genq_node = node

    worker_process_shutdown.connect(lambda **_: close_context(), weak=False)
    worker_shutdown.connect(lambda **_: close_context(), weak=False)
    # genq configured logging above; Celery must not add its own handlers (JSON lines only).
    setup_logging.connect(lambda **_: None, weak=False)
    if settings.log_json:
        json_worker_notices()
    task_prerun.connect(bind_task_context, weak=False)
    task_postrun.connect(clear_job_context, weak=False)
    if fleet_dispatch(settings):
        # Each pool process renews its slots and runs the fleet's tick from the start, so
        # a backlog moves (and endpoints are probed) before this process has run a job.
        worker_process_init.connect(lambda **_: start_fleet_side(app), weak=False)
    argv = [
        *_quiet(settings),
        "worker",
        f"--queues={','.join(queues)}",
        f"--concurrency={concurrency or fleet_concurrency(settings)}",
        f"--pool={pool}",
        f"--hostname={node}",
        f"--loglevel={loglevel}",
        "--task-events",
        "--without-gossip",
        "--without-mingle",
    ]
    try:
        app.worker_main(argv=argv)
    finally:
        # Runs after the soft shutdown's grace period and the cold shutdown (Celery exits via
        # SystemExit): whatever this node still holds goes back to the queue right away.
        hand_back_running(app, settings, node)


def run_beat(settings: Settings, *, loglevel: str | None = None) -> None:
    """Run genq's beat in the foreground: the sweep, in this process, every sweep interval
    (see ``workers.beat``), until SIGTERM or SIGINT."""
    configure_logging(settings)
    if loglevel:
        logging.getLogger().setLevel(loglevel.upper())
    upgrade_database(settings.store_url)
    app = create_worker_app(settings)
    app.genq_node = f"beat-{os.getpid()}@{settings.hostname}"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        run_sweeps(app, stop, heartbeat=settings.data_dir / BEAT_HEARTBEAT_FILE)
    finally:
        close_context()
