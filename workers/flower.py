"""``genq flower``: Flower against genq's broker, with genq's own Celery configuration.

Flower gets genq's app, configured as the workers', so it knows the queues and the priority
steps, and shows each task under its job id. Its kwargs column shows ``{'job_id': …,
'tenant': …, 'lane': …, 'priority': …}`` (the message's ``kwargsrepr``, see
``genq.dispatch``), so Flower's search finds a tenant's jobs (``kwargs:tenant=acme``); no
request body, prompt or secret travels in a task message.
"""

from __future__ import annotations

import ipaddress
import os

from genq.celery_app import create_app
from genq.logs import configure_logging
from genq.settings import Settings
from schemas import InvalidRequest

__all__ = ["flower_argv", "run_flower"]

# Flower reads its options from FLOWER_* variables too; the credentials go that way so they
# never show in the process list (argv is world-readable in /proc).
BASIC_AUTH_ENV = "FLOWER_BASIC_AUTH"
TASK_COLUMNS = "name,uuid,state,kwargs,received,started,runtime,worker"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def flower_argv(settings: Settings) -> list[str]:
    """Flower's command line (without credentials). Refuses to listen openly without auth."""
    if settings.flower_basic_auth is None and not _is_loopback(settings.flower_host):
        raise InvalidRequest(
            f"Flower would listen on {settings.flower_host} without a password; set "
            "GENQ_FLOWER_BASIC_AUTH=user:password or GENQ_FLOWER_HOST=127.0.0.1"
        )
    if settings.flower_basic_auth is not None:
        user, sep, password = settings.flower_basic_auth.get_secret_value().partition(":")
        if not (user and sep and password):
            raise InvalidRequest("GENQ_FLOWER_BASIC_AUTH must look like user:password")
    return [
        "flower",
        f"--address={settings.flower_host}",
        f"--port={settings.flower_port}",
        # Workers come and go (replicas, restarts); don't list dead ones forever.
        "--purge_offline_workers=300",
        # A task's kwargs column: its job id, tenant, lane and priority.
        f"--tasks_columns={TASK_COLUMNS}",
    ]


def run_flower(settings: Settings) -> None:
    """Run Flower in the foreground until it is stopped."""
    configure_logging(settings)
    argv = flower_argv(settings)
    if settings.flower_basic_auth is not None:
        os.environ[BASIC_AUTH_ENV] = settings.flower_basic_auth.get_secret_value()
    else:
        os.environ.pop(BASIC_AUTH_ENV, None)
    # Flower reads events and queue lengths; it consumes no task, so kombu's stock transport
    # is enough, and Flower only measures queues on transports it knows by URL scheme (with
    # genq's, the app's broker URI would start "<class ...>://").
    app = create_app(settings)
    app.conf.broker_transport = None
    app.start(argv=argv)
