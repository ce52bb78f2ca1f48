"""Moves batches along from the gateway: every ``batch_drive_seconds`` one gateway process at a
time (a Redis lock, as beat's sweep takes) finalizes the batches whose lines are all terminal,
stops the lines of cancelled and expired ones, and purges abandoned uploads.

Every step is a compare-and-set (``batches``), so a gateway that dies mid-step leaves nothing
half done that the next holder of the lock does not finish.
"""

from __future__ import annotations

import logging
import threading

import redis
from redis.exceptions import LockError

from genq import constants as c
from producers.gateway.batches import BatchLifecycle

__all__ = ["BatchDriver", "drive_once"]

log = logging.getLogger(__name__)


def drive_once(lifecycle: BatchLifecycle, client: redis.Redis) -> int | None:
    """One pass, unless another process holds the lock (then None); how many batches moved."""
    lock = client.lock(c.BATCH_LOCK_KEY, timeout=c.BATCH_LOCK_SECONDS, blocking=False)
    if not lock.acquire():
        return None
    try:
        lifecycle.files.purge_abandoned(c.FILE_UPLOAD_ABANDONED_SECONDS)
        return lifecycle.advance()
    finally:
        try:
            lock.release()
        except LockError:  # every step is a compare-and-set: an overlap was only wasteful
            log.warning("a batch pass took longer than its %d s lock", c.BATCH_LOCK_SECONDS)


class BatchDriver:
    """``drive_once`` every ``interval_seconds`` on a thread of its own. Building one starts
    nothing: ``start()`` starts the thread, ``close()`` stops it."""

    def __init__(
        self, lifecycle: BatchLifecycle, client: redis.Redis, interval_seconds: float
    ) -> None:
        self.lifecycle = lifecycle
        self.client = client
        self.interval_seconds = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="genq-batches", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            try:
                drive_once(self.lifecycle, self.client)
            except Exception:  # the store or Redis is down: the next turn tries again
                log.warning("moving batches along failed; next try soon", exc_info=True)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
