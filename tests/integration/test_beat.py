"""`genq beat` runs the sweep in its own process, while it leads (one beat at a time)."""

from __future__ import annotations

from pathlib import Path

import pytest

from genq import constants as c
from genq.sweep_records import sweep_records
from schemas import JobStatus
from tests.integration.conftest import Stack
from tests.support import eventually
from tests.support.history import recovered_by
from workers.beat import sweep_once
from workers.context import build_context
from workers.leader import LeaderLease
from workers.main import BEAT_HEARTBEAT_FILE

pytestmark = pytest.mark.integration

CHAT = {"messages": [{"role": "user", "content": "x"}]}


def test_a_beat_sweeps_only_while_it_holds_the_leader_lease(stack: Stack) -> None:
    client = stack.client()
    job = client.submit(CHAT).id
    assert client.store.start(job, "gone-1@host/1", lease_seconds=0.01) is not None
    ctx = build_context(client.app)
    other = LeaderLease(client.redis, "beat-1@elsewhere", lease_seconds=30)  # another beat leads
    assert other.claim()
    lease = LeaderLease(client.redis, "beat-2@here", lease_seconds=30)
    assert not lease.claim()
    assert sweep_once(ctx, lease) is None
    assert client.get(job).status is JobStatus.RUNNING  # nothing was swept
    other.release()
    assert lease.claim()
    report = sweep_once(ctx, lease)
    assert report is not None and report.recovered == 1
    assert client.get(job).status is JobStatus.QUEUED
    assert [(r.host, r.sweeps) for r in sweep_records(client.redis)] == [("here", 1)]
    lease.release()
    assert client.redis.exists(c.SWEEP_LEADER_KEY) == 0
    ctx.close()


def test_beat_sweeps_in_its_own_process_and_stops_on_sigterm(stack: Stack) -> None:
    client = stack.client()
    job = client.submit(CHAT).id
    assert client.store.start(job, "gone-1@host/1", lease_seconds=0.01) is not None
    beat = stack.beat()
    beat.wait_for_log("beat: Starting", timeout=30)
    assert eventually(lambda: client.get(job).status is JobStatus.QUEUED, timeout=15)
    [worker] = recovered_by(client.store, job)
    assert worker.startswith("beat-")  # the beat process itself, not a task on a worker
    heartbeat = Path(stack.env["GENQ_DATA_DIR"]) / BEAT_HEARTBEAT_FILE
    assert eventually(heartbeat.exists, timeout=5)
    assert beat.stop(timeout=10) == 0
