"""Admin HTTP endpoints for the dead-letter queue, job history over HTTP, and /metrics."""

from __future__ import annotations

import pytest

from tests.fakes.runtime_server import FakeRuntime, Fault
from tests.integration.conftest import Stack
from tests.integration.gateway.conftest import ADMIN_KEY, Gateway
from tests.support import eventually

pytestmark = pytest.mark.integration

CHAT = {"messages": [{"role": "user", "content": "x"}]}


def _wait_status(http: object, job_id: str, status: str, timeout: float = 30) -> dict[str, object]:
    def record() -> dict[str, object]:
        return http.get(f"/v1/jobs/{job_id}").json()  # type: ignore[attr-defined,no-any-return]

    eventually(lambda: record()["status"] == status, timeout=timeout)
    return record()


def test_dead_letter_admin_api(stack: Stack, gateway: Gateway, fake_runtime: FakeRuntime) -> None:
    fake_runtime.fail_next.extend([Fault.status(503)] * 4)
    stack.worker()
    admin = gateway.client(ADMIN_KEY)
    tenant = gateway.client(gateway.key("acme"))
    job = admin.post("/v1/jobs", json=CHAT).json()["id"]
    assert _wait_status(admin, job, "dead_lettered")["status"] == "dead_lettered"

    assert tenant.get("/v1/admin/dead-letters").status_code == 403
    assert gateway.client().get("/v1/admin/dead-letters").status_code == 401
    listed = admin.get("/v1/admin/dead-letters").json()["data"]
    assert [d["job_id"] for d in listed] == [job]
    assert admin.get(f"/v1/admin/dead-letters/{job}").json()["reason"] == "retries_exhausted"

    missing = admin.post("/v1/admin/dead-letters/nope/requeue")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad = admin.post("/v1/admin/dead-letters/requeue", json={"ids": ["a"], "all": True})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"

    requeued = admin.post("/v1/admin/dead-letters/requeue", json={"all": True}).json()
    assert [r["ok"] for r in requeued["results"]] == [True]
    assert _wait_status(admin, job, "succeeded")["status"] == "succeeded"
    again = admin.post(f"/v1/admin/dead-letters/{job}/requeue")
    assert again.status_code == 404  # nothing open any more

    history = admin.get(f"/v1/jobs/{job}", params={"history": "true"}).json()["history"]
    reasons = [h["reason"] or "" for h in history]
    assert any(r.startswith("requeued from the dead-letter queue by api:") for r in reasons)
    assert [h["to_status"] for h in history][-1] == "succeeded"


def test_purge_of_a_queued_job_is_refused(gateway: Gateway) -> None:
    admin = gateway.client(ADMIN_KEY)
    job = admin.post("/v1/jobs", json=CHAT).json()["id"]  # no worker: stays queued
    refused = admin.post(f"/v1/admin/dead-letters/{job}/purge")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "conflict"
    assert admin.get(f"/v1/jobs/{job}").json()["status"] == "queued"


def _queued(text: str) -> float:
    lines = [
        ln
        for ln in text.splitlines()
        if ln.startswith("genq_jobs{") and 'status="queued"' in ln and "interactive" in ln
    ]
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)


def test_gateway_serves_metrics_that_move(stack: Stack, gateway: Gateway) -> None:
    admin = gateway.client(ADMIN_KEY)
    before = admin.get("/metrics")
    assert before.status_code == 200, before.text  # at /metrics itself, no redirect
    assert before.headers["content-type"].startswith("text/plain")
    for _ in range(3):
        admin.post("/v1/jobs", json=CHAT)  # no worker: they stay queued
    after = admin.get("/metrics").text
    assert _queued(after) == _queued(before.text) + 3


@pytest.mark.parametrize("path", ["/metrics", "/metrics/"])
def test_gateway_metrics_need_the_admin_key(gateway: Gateway, path: str) -> None:
    """They count every tenant's jobs: no key is a 401, a tenant's key a 403."""
    anonymous = gateway.client().get(path, follow_redirects=True)
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.json()["error"]["code"] == "unauthorized"
    tenant = gateway.client(gateway.key("acme")).get(path, follow_redirects=True)
    assert tenant.status_code == 403, tenant.text
    assert tenant.json()["error"]["code"] == "forbidden"
