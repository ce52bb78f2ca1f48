"""A running job's lease renewal and cancel watch, on one small thread per running job."""

from __future__ import annotations

import logging
import threading
import time

import redis

from genq import constants as c
from genq.keys import cancel_key
from genq.store import JobStore

log = logging.getLogger(__name__)


class LeaseKeeper(threading.Thread):
    """Renews the lease every ``renew_seconds``; watches the cancel flag every poll interval.

    The generation loop only reads two events, so a token costs no I/O for this.
    """

    def __init__(
        self,
        store: JobStore,
        client: redis.Redis,
        *,
        job_id: str,
        worker: str,
        lease_seconds: float,
        renew_seconds: float,
    ) -> None:
        super().__init__(name=f"lease-{job_id[:8]}", daemon=True)
        self.store = store
        self.client = client
        self.job_id = job_id
        self.worker = worker
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self._stop_event = threading.Event()

    def run(self) -> None:
        next_renewal = time.monotonic() + self.renew_seconds
        while not self._stop_event.wait(c.CANCEL_POLL_SECONDS):
            if time.monotonic() >= next_renewal:
                next_renewal = time.monotonic() + self.renew_seconds
                try:
                    if not self.store.renew_lease(self.job_id, self.worker, self.lease_seconds):
                        self.lost.set()
                        return
                except Exception:  # a store blip must not end the watch: the lease has slack
                    log.warning("lease renewal failed for %s", self.job_id, exc_info=True)
            try:
                if not self.cancelled.is_set() and self.client.exists(cancel_key(self.job_id)):
                    self.cancelled.set()
            except Exception:  # Redis trouble delays a cancel, never the lease
                log.warning("cancel check failed for %s", self.job_id, exc_info=True)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=2)

    def __enter__(self) -> LeaseKeeper:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
