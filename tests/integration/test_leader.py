"""Beat on every host, one sweeping at a time: the leader lease in Redis (workers/leader.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from genq import constants as c
from genq.metrics import build_registry, metric_samples
from genq.sweep_records import current_leader, host_of, sweep_records
from schemas import JobStatus
from tests.integration.conftest import Stack
from tests.support import eventually
from tests.support.history import recovered_by
from tests.support.hosts import Host
from workers.leader import LeaderLease

pytestmark = pytest.mark.integration

CHAT = {"messages": [{"role": "user", "content": "x"}]}


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as connection:
        yield connection


def test_one_lease_holder_at_a_time_and_a_released_lease_is_taken_over(
    client: redis.Redis,
) -> None:
    a = LeaderLease(client, "beat-1@host-a", lease_seconds=30)
    b = LeaderLease(client, "beat-2@host-b", lease_seconds=30)
    assert a.claim() and a.leading
    assert not b.claim() and not b.leading
    assert a.claim()  # extending its own lease
    assert current_leader(client) == "beat-1@host-a"
    b.release()  # releasing a lease one does not hold deletes nothing
    assert current_leader(client) == "beat-1@host-a"
    a.release()
    assert not a.leading and current_leader(client) is None
    assert b.claim() and current_leader(client) == "beat-2@host-b"
    assert not a.claim()


def test_a_lease_nobody_extends_runs_out_and_the_next_claim_takes_it(
    client: redis.Redis,
) -> None:
    gone = LeaderLease(client, "beat-1@host-a", lease_seconds=0.5)
    assert gone.claim()  # then its process dies: nobody extends it
    other = LeaderLease(client, "beat-2@host-b", lease_seconds=0.5)
    assert not other.claim()
    assert eventually(other.claim, timeout=5, interval=0.05)
    assert not gone.claim()  # the old leader, back, is a follower now


def test_a_leader_whose_sweep_loop_stalled_gives_the_lead_up(client: redis.Redis) -> None:
    stalled = LeaderLease(client, "beat-1@host-a", lease_seconds=30, stall_seconds=0.2)
    assert stalled.claim()
    assert eventually(lambda: not stalled.claim(), timeout=5)
    assert current_leader(client) is None  # released, not left to run out
    stalled.alive()
    assert stalled.claim()


def _sweeps(redis_client: redis.Redis) -> dict[str, int]:
    return {record.host: record.sweeps for record in sweep_records(redis_client)}


def test_two_beats_one_sweeps_and_a_killed_leader_is_replaced(
    stack: Stack, fresh_postgres_url: str, tmp_path: Path
) -> None:
    """Two hosts' beats: only the leader sweeps; kill -9 it and the other takes over within
    two sweep intervals, and a job whose worker died with the leader's host is recovered
    within lease + 3 x sweep interval of the kill."""
    interval, lease = 2.0, 3.0
    shared = {
        **stack.env,
        "GENQ_DATABASE_URL": fresh_postgres_url,
        "GENQ_SWEEP_INTERVAL_SECONDS": str(interval),
        "GENQ_LEASE_SECONDS": str(lease),
    }
    stack.env.update(shared)
    hosts = {name: Host.create(name, shared, tmp_path) for name in ("host-a", "host-b")}
    try:
        for host in hosts.values():
            host.beat()
        client = stack.client()
        redis_client = client.redis
        assert eventually(lambda: current_leader(redis_client) is not None, timeout=10)
        leader = current_leader(redis_client)
        assert leader is not None
        leading, following = host_of(leader), ({*hosts} - {host_of(leader)}).pop()
        # While both run, only the leader's host sweeps.
        start = _sweeps(redis_client)
        assert eventually(
            lambda: _sweeps(redis_client).get(leading, 0) >= start.get(leading, 0) + 3,
            timeout=10 * interval,
        )
        assert _sweeps(redis_client).get(following, 0) == start.get(following, 0)
        # A job running on the leader's host when the whole host goes.
        job = client.submit(CHAT).id
        assert client.store.start(job, f"llm-1@{leading}/1", lease_seconds=lease) is not None
        killed_at = hosts[leading].kill()
        assert eventually(
            lambda: host_of(current_leader(redis_client) or "") == following,
            timeout=2 * interval - (time.time() - killed_at),
            interval=0.05,
        ), current_leader(redis_client)
        assert eventually(
            lambda: client.get(job).status is JobStatus.QUEUED,
            timeout=lease + 3 * interval - (time.time() - killed_at),
            interval=0.05,
        )
        [by] = recovered_by(client.store, job)
        assert by.startswith("beat-") and f"@{following}/" in by, by
        # The metric shows which host swept, and which beat leads now.
        registry, collector = build_registry(client.settings)
        try:
            samples = list(metric_samples(registry))
        finally:
            collector.close()
        swept = {s[1]["host"]: s[2] for s in samples if s[0] == "genq_sweeps_total"}
        assert swept[following] >= 1 and swept[leading] >= 3, swept
        [(labels, value)] = [(s[1], s[2]) for s in samples if s[0] == "genq_sweep_leader"]
        assert labels["host"] == following and value == 1.0
        lasts = {s[1]["host"]: s[2] for s in samples if s[0] == "genq_sweep_last_timestamp_seconds"}
        assert lasts[following] > killed_at
        assert redis_client.exists(c.SWEEP_LEADER_KEY) == 1
    finally:
        for host in hosts.values():
            host.stop()


def test_a_beat_stopped_cleanly_hands_the_lead_over_at_once(
    stack: Stack, fresh_postgres_url: str, tmp_path: Path
) -> None:
    interval = 30.0  # a lease that would take 30 s to run out: only the release explains it
    shared = {
        **stack.env,
        "GENQ_DATABASE_URL": fresh_postgres_url,
        "GENQ_SWEEP_INTERVAL_SECONDS": str(interval),
    }
    stack.env.update(shared)
    first = Host.create("host-a", shared, tmp_path)
    second = Host.create("host-b", shared, tmp_path)
    try:
        beat = first.beat()
        redis_client = stack.client().redis
        assert eventually(lambda: current_leader(redis_client) is not None, timeout=10)
        second.beat()
        assert host_of(current_leader(redis_client) or "") == "host-a"
        assert beat.stop(timeout=10) == 0
        # The follower claims every interval / 4 = 7.5 s: well before the lease would run out.
        assert eventually(
            lambda: host_of(current_leader(redis_client) or "") == "host-b", timeout=15
        )
        assert eventually(lambda: _sweeps(redis_client).get("host-b", 0) >= 1, timeout=5)
    finally:
        first.stop()
        second.stop()
