"""Running jobs' lease renewal and cancel watch: one thread per worker process, for every job
that process holds.

The generation loop only reads two events per job, so a token costs no I/O for this; and a
job costs no thread start and join (which was an eighth of a short job's time).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import redis

from genq import constants as c
from genq.redis_keys import cancel_key
from genq.store import JobStore

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Lease:
    """One held job: ``cancelled`` is set when a cancel is requested, ``lost`` when the sweep
    gave the job to someone else."""

    job_id: str
    next_renewal: float
    cancelled: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)


class LeaseWatch:
    """Renews each held job's lease every ``renew_seconds`` and checks the jobs' cancel flags
    every ``CANCEL_POLL_SECONDS`` (one Redis round trip for all of them)."""

    def __init__(
        self,
        store: JobStore,
        client: redis.Redis,
        *,
        worker: str,
        lease_seconds: float,
        renew_seconds: float,
    ) -> None:
        self.store = store
        self.client = client
        self.worker = worker
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self._held: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, job_id: str) -> Lease:
        """Start watching ``job_id`` (whose lease was just taken); ``release`` it when done."""
        lease = Lease(job_id, time.monotonic() + self.renew_seconds)
        with self._lock:
            self._held[job_id] = lease
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="genq-leases", daemon=True)
                self._thread.start()
        return lease

    def release(self, lease: Lease) -> None:
        with self._lock:
            if self._held.get(lease.job_id) is lease:
                del self._held[lease.job_id]

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.wait(c.CANCEL_POLL_SECONDS):
            with self._lock:
                held = list(self._held.values())
            if held:
                self._renew_due(held)
                self._check_cancels(held)

    def _renew_due(self, held: list[Lease]) -> None:
        now = time.monotonic()
        for lease in held:
            if now < lease.next_renewal or lease.lost.is_set():
                continue
            lease.next_renewal = now + self.renew_seconds
            try:
                if not self.store.renew_lease(lease.job_id, self.worker, self.lease_seconds):
                    lease.lost.set()
            except Exception:  # a store blip must not end the watch: the lease has slack
                log.warning("lease renewal failed for %s", lease.job_id, exc_info=True)

    def _check_cancels(self, held: list[Lease]) -> None:
        watching = [lease for lease in held if not lease.cancelled.is_set()]
        if not watching:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for lease in watching:
                pipe.exists(cancel_key(lease.job_id))
            flags = pipe.execute()
        except Exception:  # Redis trouble delays a cancel, never the lease
            log.warning("cancel check failed for %d job(s)", len(watching), exc_info=True)
            return
        for lease, flag in zip(watching, flags, strict=True):
            if flag:
                lease.cancelled.set()
