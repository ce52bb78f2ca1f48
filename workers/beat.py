"""``genq beat``: the sweep, run in this process every sweep interval under a Redis lock.

The sweep used to be a Celery task that Celery beat published every few seconds to
``genq.maintenance``; Flower listed each run (17,000 rows a day), burying the jobs. It is
frequent, small and needs no worker slot, so beat now runs it itself: no message, no task
events, nothing for Flower to list. A lock in Redis (redis-py's ``Lock``: a random token, a
TTL, a compare-and-delete release) keeps it to one sweep at a time across processes, so a
second beat, or one restarted while the old one is finishing, is harmless.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from celery import Celery
from redis.exceptions import LockError

from genq import constants as c
from tasks.sweep import SweepReport, run_sweep
from workers.context import WorkerContext, context_for

__all__ = ["run_sweeps", "sweep_once"]

log = logging.getLogger(__name__)


def sweep_once(ctx: WorkerContext) -> SweepReport | None:
    """One sweep, unless another process holds the sweep lock (then ``None``)."""
    lock = ctx.redis.lock(c.SWEEP_LOCK_KEY, timeout=c.SWEEP_LOCK_SECONDS, blocking=False)
    if not lock.acquire():
        return None
    try:
        return run_sweep(ctx)
    finally:
        try:
            lock.release()
        except LockError:
            # Every step is a compare-and-set, so an overlap was harmless, only wasteful.
            log.warning("the sweep took longer than its %d s lock", c.SWEEP_LOCK_SECONDS)


def run_sweeps(app: Celery, stop: threading.Event, heartbeat: Path | None = None) -> None:
    """Sweep now, then every ``sweep_interval_seconds`` until ``stop`` is set.

    ``heartbeat`` is touched after each turn, swept or not: its age tells a health check
    whether this loop still turns.
    """
    interval = app.genq_settings.sweep_interval_seconds
    log.info(
        "beat: Starting: the sweep every %g s, one at a time (lock %s)", interval, c.SWEEP_LOCK_KEY
    )
    while True:
        try:
            sweep_once(context_for(app))
        except Exception as exc:  # the store or Redis is down: try again next turn
            log.warning(
                "the sweep failed (%s); next try in %g s",
                exc.__class__.__name__,
                interval,
                exc_info=True,
            )
        if heartbeat is not None:
            heartbeat.touch()
        if stop.wait(interval):
            return
