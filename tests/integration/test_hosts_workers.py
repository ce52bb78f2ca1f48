"""Workers on two hosts (own host names and data dirs) sharing the broker, Redis and a PostgreSQL
store: each is its own Celery node, holds its jobs' leases under its own name, and a worker
shutting down on one host hands back its own jobs only."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from schemas import JobStatus
from tests.fakes.runtime_server import FakeRuntime
from tests.integration.conftest import Stack
from tests.support import eventually
from tests.support.hosts import Host

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

CHAT = {"messages": [{"role": "user", "content": "one per host"}]}
TOKENS = [f"t{i} " for i in range(30)]


def test_each_host_holds_and_hands_back_only_its_own_jobs(
    stack: Stack, fake_runtime: FakeRuntime, fresh_postgres_url: str, tmp_path: Path
) -> None:
    fake_runtime.configure(tokens=TOKENS, token_delay_seconds=1.0)  # 30 s: outlives the test
    shared = {
        **stack.env,
        "GENQ_DATABASE_URL": fresh_postgres_url,
        "GENQ_SHUTDOWN_GRACE_SECONDS": "1",
        # One job running on each host at once: the one-endpoint fleet needs a slot for each.
        "GENQ_RUNTIME_SLOTS": "2",
    }
    stack.env.update(shared)
    hosts = {name: Host.create(name, shared, tmp_path) for name in ("host-a", "host-b")}
    try:
        workers = {name: host.worker(concurrency=1) for name, host in hosts.items()}
        client = stack.client()
        pong = client.app.control.ping(timeout=5)
        nodes = sorted(node.rpartition("@")[2] for reply in pong for node in reply)
        assert nodes == ["host-a", "host-b"], pong  # one Celery node per host, by its name
        jobs = [client.submit({**CHAT, "max_tokens": len(TOKENS)}).id for _ in range(2)]

        def running_hosts() -> dict[str, str]:
            records = [client.get(job) for job in jobs]
            return {
                (r.worker_id or "").partition("@")[2].partition("/")[0]: r.id
                for r in records
                if r.status is JobStatus.RUNNING
            }

        assert eventually(lambda: sorted(running_hosts()) == ["host-a", "host-b"], timeout=30)
        on = running_hosts()
        workers["host-a"].send_signal(signal.SIGTERM)
        assert eventually(lambda: not workers["host-a"].running, timeout=30)
        handed = client.get(on["host-a"], history=True)
        assert handed.status is JobStatus.QUEUED
        assert (handed.history or [])[-1].reason == "worker shutdown: handed back"
        kept = client.get(on["host-b"], history=True)
        assert kept.status is JobStatus.RUNNING and "@host-b/" in (kept.worker_id or "")
        assert all(h.reason != "worker shutdown: handed back" for h in kept.history or [])
        fake_runtime.configure(token_delay_seconds=0)
        for job in jobs:
            assert client.wait(job, timeout=60).status is JobStatus.SUCCEEDED
    finally:
        for host in hosts.values():
            host.stop()
