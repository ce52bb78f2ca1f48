"""Cancelling queued, running and finished jobs, and deadlines, through the real gateway."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
from httpx_sse import connect_sse

from genq.fleet.backlog import Backlog
from tests.fakes.runtime_server import FakeRuntime
from tests.integration.conftest import Stack
from tests.integration.gateway.conftest import Gateway
from tests.support import eventually

pytestmark = pytest.mark.integration

CHAT = {"messages": [{"role": "user", "content": "go on"}]}


def test_cancel_queued_job_never_runs(
    stack: Stack, gateway: Gateway, fake_runtime: FakeRuntime
) -> None:
    api = gateway.client(gateway.key("acme"))
    job_id = api.post("/v1/jobs", json=CHAT).json()["id"]
    answer = api.post(f"/v1/jobs/{job_id}/cancel")
    assert answer.status_code == 200
    body = answer.json()
    assert body["outcome"] == "cancelled" and body["job"]["status"] == "cancelled"
    assert "never run" in body["message"]
    stack.worker()
    sentinel = api.post("/v1/jobs", json=CHAT).json()["id"]  # queued behind the cancelled one
    done = api.get(f"/v1/jobs/{sentinel}/wait", params={"timeout": 20}, timeout=30).json()
    assert done["status"] == "succeeded"
    assert fake_runtime.job_requests_seen == 1  # the sentinel's only
    assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
    with connect_sse(api, "GET", f"/v1/jobs/{job_id}/stream") as source:
        (end,) = list(source.iter_sse())
    assert end.event == "end" and json.loads(end.data)["status"] == "cancelled"


def test_a_cancelled_queued_job_leaves_the_backlog_at_once(
    stack: Stack, gateway: Gateway, fake_runtime: FakeRuntime
) -> None:
    """With no worker, the runtime's one slot takes the first job to the broker and the second
    waits in genq's backlog; cancelled, it leaves the backlog then (it would otherwise take the
    slot on its way to a worker that only skips it)."""
    api = gateway.client(gateway.key("acme"))
    first = api.post("/v1/jobs", json=CHAT).json()["id"]
    second = api.post("/v1/jobs", json=CHAT).json()["id"]
    client = redis.Redis.from_url(stack.settings.redis_url)
    backlog = Backlog(client)
    assert backlog.size() == 1 and backlog.waiting(second) is not None
    assert api.post(f"/v1/jobs/{second}/cancel").json()["outcome"] == "cancelled"
    assert backlog.size() == 0 and backlog.waiting(second) is None
    stack.worker()
    done = api.get(f"/v1/jobs/{first}/wait", params={"timeout": 20}, timeout=30).json()
    assert done["status"] == "succeeded" and fake_runtime.job_requests_seen == 1
    client.close()


def test_cancel_running_job_stops_within_a_second(
    stack: Stack, gateway: Gateway, fake_runtime: FakeRuntime
) -> None:
    tokens = [f"t{i} " for i in range(200)]
    fake_runtime.configure(tokens=tokens, token_delay_seconds=0.05)  # 10 s if left alone
    stack.worker()
    api = gateway.client(gateway.key("acme"))
    job_id = api.post("/v1/jobs", json=CHAT).json()["id"]
    seen = []
    with connect_sse(api, "GET", f"/v1/jobs/{job_id}/stream", timeout=30) as source:
        for event in source.iter_sse():
            seen.append(event)
            if sum(e.event == "delta" for e in seen) == 3:
                break
    requested = time.monotonic()
    answer = api.post(f"/v1/jobs/{job_id}/cancel").json()
    assert answer["outcome"] in {"cancelling", "already_cancelled"}
    done = api.get(f"/v1/jobs/{job_id}/wait", params={"timeout": 10}, timeout=20).json()
    assert time.monotonic() - requested < 1.5
    assert done["status"] == "cancelled"
    partial = done["result"]["text"]
    assert partial and "".join(tokens).startswith(partial) and len(partial) < len("".join(tokens))
    assert done["result"]["finish_reason"] == "cancelled"
    assert fake_runtime.wait_until(lambda: fake_runtime.disconnects == 1, timeout_seconds=3)
    assert fake_runtime.streams_completed == 0
    resumed = []
    with connect_sse(
        api, "GET", f"/v1/jobs/{job_id}/stream", headers={"Last-Event-ID": seen[-1].id}
    ) as source:
        resumed = list(source.iter_sse())
    streamed = [json.loads(e.data)["delta"] for e in seen + resumed if e.event == "delta"]
    assert "".join(streamed) == partial  # the stream keeps exactly the partial output
    assert json.loads(resumed[-1].data)["status"] == "cancelled"


def test_cancel_finished_job_is_a_noop(stack: Stack, gateway: Gateway) -> None:
    stack.worker()
    api = gateway.client(gateway.key("acme"))
    job_id = api.post("/v1/jobs", json=CHAT).json()["id"]
    done = api.get(f"/v1/jobs/{job_id}/wait", params={"timeout": 20}, timeout=30).json()
    answer = api.post(f"/v1/jobs/{job_id}/cancel")
    assert answer.status_code == 200
    assert answer.json()["outcome"] == "already_succeeded"
    assert "nothing was changed" in answer.json()["message"]
    assert answer.json()["job"] == done


def test_job_not_started_in_time_expires_on_pickup(
    stack: Stack, gateway: Gateway, fake_runtime: FakeRuntime
) -> None:
    api = gateway.client(gateway.key("acme"))
    job = api.post("/v1/jobs", json={**CHAT, "expires_in": 0.5}).json()
    assert job["deadline"] is not None
    deadline = datetime.fromisoformat(job["deadline"])
    assert eventually(lambda: datetime.now(UTC) > deadline)
    stack.worker()
    done = api.get(f"/v1/jobs/{job['id']}/wait", params={"timeout": 20}, timeout=30).json()
    assert done["status"] == "expired" and done["error"]["code"] == "expired"
    assert fake_runtime.job_requests_seen == 0


def test_deadline_passes_while_queued_and_the_sweep_expires_it(
    stack: Stack, gateway: Gateway, fake_runtime: FakeRuntime
) -> None:
    stack.ops_worker()
    stack.beat()
    api = gateway.client(gateway.key("acme"))
    api.post("/v1/jobs", json=CHAT)  # no LLM worker: it holds the one slot, in the broker
    deadline = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    job_id = api.post("/v1/jobs", json={**CHAT, "deadline": deadline}).json()["id"]
    client = redis.Redis.from_url(stack.settings.redis_url)
    backlog = Backlog(client)
    assert backlog.waiting(job_id) is not None  # it waits for the slot in genq's backlog
    done = api.get(f"/v1/jobs/{job_id}/wait", params={"timeout": 20}, timeout=30).json()
    assert done["status"] == "expired"
    assert fake_runtime.job_requests_seen == 0
    assert eventually(lambda: backlog.size() == 0 and backlog.waiting(job_id) is None)
    client.close()
