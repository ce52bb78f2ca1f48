"""``genq beat``: the sweep, run in this process every sweep interval by whichever beat leads.

The sweep used to be a Celery task that Celery beat published every few seconds to
``genq.maintenance``; Flower listed each run (17,000 rows a day), burying the jobs. It is
frequent, small and needs no worker slot, so beat now runs it itself: no message, no task
events, nothing for Flower to list.

Every host runs a beat, so the sweep survives the loss of any one of them: they elect a leader
through a lease in Redis (``workers.leader``), and only the leader sweeps. A killed leader's
lease runs out within a sweep interval and the next claim takes it over, so sweeps pause for
about 1.5 intervals at most. Each sweep is counted for the leader's host
(``genq.sweep_records``: the ``genq_sweeps_total{host}`` metric).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from celery import Celery

from genq import constants as c
from genq.sweep_records import record_sweep
from tasks.sweep import SweepReport, run_sweep
from workers.context import WorkerContext, context_for, node_name
from workers.leader import LeaderLease

__all__ = ["run_sweeps", "sweep_once"]

log = logging.getLogger(__name__)


def sweep_once(ctx: WorkerContext, lease: LeaderLease) -> SweepReport | None:
    """One sweep, counted for this beat's host, if ``lease`` leads (else ``None``)."""
    if not lease.leading:
        return None
    report = run_sweep(ctx)
    record_sweep(ctx.redis, lease.identity)
    return report


def run_sweeps(app: Celery, stop: threading.Event, heartbeat: Path | None = None) -> None:
    """Take part in the election, and while leading sweep every ``sweep_interval_seconds``,
    until ``stop`` is set (then give the lead up at once).

    ``heartbeat`` is touched after each turn, leading or not: its age tells a health check
    whether this loop still turns.
    """
    interval = app.genq_settings.sweep_interval_seconds
    ctx = context_for(app)
    lease = LeaderLease(ctx.redis, node_name(app), lease_seconds=interval)
    # The loop only reads memory and touches a file between sweeps: turning often costs
    # nothing and starts the first sweep soon after the lead comes.
    tick = min(interval / 4, c.BEAT_TICK_SECONDS)
    log.info(
        "beat: Starting: %s sweeps every %g s while it leads (lease %s)",
        lease.identity,
        interval,
        c.SWEEP_LEADER_KEY,
    )
    lease.start()
    due = 0.0
    try:
        while True:
            lease.alive()
            if lease.leading and time.monotonic() >= due:
                due = time.monotonic() + interval
                try:
                    sweep_once(context_for(app), lease)
                except Exception as exc:  # the store or Redis is down: try again next turn
                    log.warning(
                        "the sweep failed (%s); next try in %g s",
                        exc.__class__.__name__,
                        interval,
                        exc_info=True,
                    )
            elif not lease.leading:
                due = 0.0  # sweep at once when the lead comes
            if heartbeat is not None:
                heartbeat.touch()
            if stop.wait(tick):
                return
    finally:
        lease.close()
