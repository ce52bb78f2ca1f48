"""What the sweep leaves in Redis about itself: which beat leads it, and per host how many
sweeps its beats ran and when the last one ran. ``workers.leader`` writes it; the metrics
(``genq_sweeps_total``, ``genq_sweep_last_timestamp_seconds``, ``genq_sweep_leader``) read it."""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from genq import constants as c

__all__ = ["SweepRecord", "current_leader", "host_of", "record_sweep", "sweep_records"]


@dataclass(frozen=True)
class SweepRecord:
    host: str
    sweeps: int
    last_at: float


def host_of(identity: str) -> str:
    """The host part of a beat identity ``beat-<pid>@<host>``."""
    return identity.rpartition("@")[2] or identity


def current_leader(client: redis.Redis) -> str | None:
    """The identity of the beat holding the sweep lease, if any."""
    value = client.get(c.SWEEP_LEADER_KEY)
    return value.decode() if isinstance(value, bytes) else None


def record_sweep(client: redis.Redis, identity: str, at: float | None = None) -> None:
    """Count one sweep for the host of ``identity``."""
    host = host_of(identity)
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(c.SWEEP_COUNTS_KEY, host, 1)
    pipe.hset(c.SWEEP_LAST_KEY, host, repr(time.time() if at is None else at))
    pipe.execute()


def sweep_records(client: redis.Redis) -> list[SweepRecord]:
    """Per host: how many sweeps its beats ran, and when the last one ran (unix time)."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(c.SWEEP_COUNTS_KEY)
    pipe.hgetall(c.SWEEP_LAST_KEY)
    counts, lasts = pipe.execute()
    return [
        SweepRecord(host=host.decode(), sweeps=int(count), last_at=float(lasts.get(host, b"0")))
        for host, count in sorted(counts.items())
    ]
