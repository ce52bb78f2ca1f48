"""Which ``genq beat`` sweeps: one leader at a time, elected through a lease in Redis.

Every host runs a beat; each one's ``LeaderLease`` tries, every quarter of a sweep interval,
to take the key ``genq:beat:leader`` (``SET NX PX``) or, when it already holds it, to extend
it (a compare-and-``PEXPIRE`` script, so a beat never extends a lease another one took). The
lease lasts one sweep interval: a leader killed with ``kill -9``, or whose host vanished, is
replaced by the next claim after its lease ran out, and the new leader sweeps at once, so
sweeps stop for at most about 1.5 intervals. A beat that stops cleanly deletes its lease
(compare-and-delete) and another takes over at its next claim.

Why Redis and not PostgreSQL advisory locks: a session advisory lock is released only when
PostgreSQL notices its connection is gone, which for a host that vanished without closing its
sockets (power, network) is the TCP keepalive time (two hours by default); the SQLite store
has no such lock; and Redis is part of every deployment whatever the broker. Redis gives no
fencing token: a leader that stalls past its lease (a paused VM) may finish a sweep after the
next leader started one. That overlap is harmless, because every step of the sweep is a
compare-and-set in the store, only wasteful.

The lease is extended by a thread, so a sweep longer than an interval keeps its lead; the
sweep loop stamps ``alive()`` each turn and the thread stops extending (and gives up the lead)
when the loop has not turned for ``stall_seconds``: a hung sweep cannot hold the lead forever.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import redis

from genq import constants as c

__all__ = ["LeaderLease"]

log = logging.getLogger(__name__)

# 1: extended (this identity held it), 2: taken (nobody held it), 0: someone else holds it.
CLAIM_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 2
end
return 0
"""

RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaderLease:
    """This beat's claim on the sweep. Building one touches nothing; ``start()`` claims once,
    at once, then keeps claiming on a thread of its own until ``close()``."""

    def __init__(
        self,
        client: redis.Redis,
        identity: str,
        *,
        lease_seconds: float,
        stall_seconds: float = c.SWEEP_STALL_SECONDS,
    ) -> None:
        self.client = client
        self.identity = identity
        self.lease_ms = max(1, int(lease_seconds * 1000))
        self.claim_seconds = lease_seconds / 4
        self.stall_seconds = stall_seconds
        self._leading = threading.Event()
        self._stop = threading.Event()
        self._alive_at = time.monotonic()
        self._thread: threading.Thread | None = None

    @property
    def leading(self) -> bool:
        """Whether this beat held the lease at its last claim (and has not lost it since)."""
        return self._leading.is_set()

    def alive(self) -> None:
        """The sweep loop turned: the lease may be extended for another while."""
        self._alive_at = time.monotonic()

    def claim(self) -> bool:
        """Take or extend the lease once; whether this beat leads now."""
        if time.monotonic() - self._alive_at > self.stall_seconds:
            if self.leading:
                log.warning(
                    "beat: the sweep loop has not turned for %g s; giving up the lead",
                    self.stall_seconds,
                )
                self.release()
            return False
        try:
            outcome = int(
                self.client.eval(CLAIM_LUA, 1, c.SWEEP_LEADER_KEY, self.identity, self.lease_ms)
            )
        except redis.RedisError as exc:
            # Without Redis nobody can claim; ours runs out by itself, so stop sweeping now.
            self._set_leading(False, f"Redis unavailable ({exc.__class__.__name__})")
            return False
        self._set_leading(outcome != 0, "another beat holds the lease")
        return outcome != 0

    def release(self) -> None:
        """Give up the lease if this beat still holds it (another takes over at its next
        claim)."""
        self._set_leading(False, "released")
        with contextlib.suppress(redis.RedisError):  # else it runs out by itself
            self.client.eval(RELEASE_LUA, 1, c.SWEEP_LEADER_KEY, self.identity)

    def start(self) -> None:
        self.claim()
        self._thread = threading.Thread(target=self._run, name="genq-leader", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.release()

    def _run(self) -> None:
        while not self._stop.wait(self.claim_seconds):
            self.claim()

    def _set_leading(self, leading: bool, why: str) -> None:
        if leading and not self.leading:
            self._leading.set()
            log.info("beat: %s leads the sweep now", self.identity)
        elif not leading and self.leading:
            self._leading.clear()
            log.info("beat: %s no longer leads the sweep (%s)", self.identity, why)
