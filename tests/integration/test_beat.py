"""`genq beat` runs the sweep in its own process, one sweep at a time across processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from genq import constants as c
from schemas import JobStatus
from tests.integration.conftest import Stack
from tests.support import eventually
from tests.support.history import recovered_by
from workers.beat import sweep_once
from workers.context import build_context
from workers.main import BEAT_HEARTBEAT_FILE

pytestmark = pytest.mark.integration

CHAT = {"messages": [{"role": "user", "content": "x"}]}


def test_a_sweep_waits_while_another_process_holds_the_lock(stack: Stack) -> None:
    client = stack.client()
    job = client.submit(CHAT).id
    assert client.store.start(job, "gone-1@host/1", lease_seconds=0.01) is not None
    ctx = build_context(client.app)
    other = client.redis.lock(c.SWEEP_LOCK_KEY, timeout=30)  # another beat, mid-sweep
    assert other.acquire(blocking=False)
    assert sweep_once(ctx) is None
    assert client.get(job).status is JobStatus.RUNNING  # nothing was swept
    other.release()
    report = sweep_once(ctx)
    assert report is not None and report.recovered == 1
    assert client.get(job).status is JobStatus.QUEUED
    assert client.redis.exists(c.SWEEP_LOCK_KEY) == 0  # released once done
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
