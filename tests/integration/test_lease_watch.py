"""The per-process lease watch: renews held jobs' leases, notices cancels and lost leases."""

from __future__ import annotations

import pytest
import redis
from sqlalchemy import update

from genq.redis_keys import cancel_key
from genq.store import JobStore, build_engine
from genq.store.tables import jobs
from tests.integration.conftest import Stack
from tests.support import eventually
from workers.lease import LeaseWatch

pytestmark = pytest.mark.integration

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
WORKER = "node/1"


def test_one_thread_renews_cancels_and_notices_lost_leases(stack: Stack) -> None:
    client = stack.client()
    store = JobStore(build_engine(stack.settings.store_url))
    broker = redis.Redis.from_url(stack.settings.redis_url)
    ids = [client.submit(CHAT).id for _ in range(3)]
    for job_id in ids:
        assert store.start(job_id, WORKER, lease_seconds=2) is not None
    watch = LeaseWatch(store, broker, worker=WORKER, lease_seconds=2, renew_seconds=0.2)
    try:
        leases = [watch.hold(job_id) for job_id in ids]
        expiry = {job_id: store.routing(job_id)["lease_expires_at"] for job_id in ids}
        assert eventually(
            lambda: all(store.routing(j)["lease_expires_at"] > expiry[j] for j in ids)
        ), "every held lease is renewed"

        broker.set(cancel_key(ids[0]), 1)
        assert eventually(leases[0].cancelled.is_set)
        with store.engine.begin() as conn:  # the sweep gave job 2 to another worker
            conn.execute(update(jobs).where(jobs.c.id == ids[1]).values(worker_id="other/9"))
        assert eventually(leases[1].lost.is_set)
        assert not leases[2].cancelled.is_set() and not leases[2].lost.is_set()

        watch.release(leases[2])
        released_at = store.routing(ids[2])["lease_expires_at"]
        renewals = [store.routing(ids[0])["lease_expires_at"]]

        def renewed_twice_more() -> bool:  # job 0 is still held: the watch keeps turning
            if (expiry := store.routing(ids[0])["lease_expires_at"]) != renewals[-1]:
                renewals.append(expiry)
            return len(renewals) > 2

        assert eventually(renewed_twice_more)
        assert store.routing(ids[2])["lease_expires_at"] == released_at, "released: not renewed"
    finally:
        watch.close()
        broker.close()
        store.engine.dispose()
