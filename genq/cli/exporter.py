"""``genq metrics``: serve ``/metrics`` on ``metrics_host:metrics_port`` until stopped."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from prometheus_client import start_http_server

from genq.logs import configure_logging
from genq.metrics import build_registry
from genq.settings import Settings
from genq.store import StoreUnavailable
from genq.store.migrate import upgrade_database

__all__ = ["serve_metrics"]

log = logging.getLogger(__name__)


def serve_metrics(settings: Settings, stop: threading.Event | None = None) -> None:
    """Serve genq's metrics until SIGTERM/SIGINT (or ``stop`` is set)."""
    configure_logging(settings)
    try:  # like every other entry point: a fresh store has its tables before the first scrape
        upgrade_database(settings.store_url)
    except StoreUnavailable as exc:  # serve anyway: the store then reads as down
        log.warning("%s", exc.message)
    stop = stop or threading.Event()
    registry, collector = build_registry(settings)
    server, thread = start_http_server(
        settings.metrics_port, addr=settings.metrics_host, registry=registry
    )

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, request_stop)
    log.info(
        "serving metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port
    )
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        collector.close()
