"""Webhook administration and refusals: the SSRF guard at submit and at send time, the
``genq webhooks`` CLI (a real subprocess), and the admin HTTP router."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from genq.store.webhook_log import list_attempts, list_deliveries
from genq.webhooks.ssrf import WebhookUrlRefused
from producers.webhook_admin import add_endpoint
from schemas import InvalidRequest
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.integration.conftest import Stack
from tests.support import eventually, free_port
from tests.support.environment import process_env
from tests.support.processes import REPO_ROOT

pytestmark = pytest.mark.integration

DEFAULT_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
ADMIN_KEY = "webhooks-admin-key-0123456789"
CHAT = {"messages": [{"role": "user", "content": "say hello"}]}
LOOPBACK = {"GENQ_WEBHOOK_ALLOW": "127.0.0.1/32", "GENQ_WEBHOOK_RETRY_SCHEDULE_SECONDS": "0,1"}


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


def wait_until(check: Any, timeout: float, what: str) -> None:
    assert eventually(check, timeout=timeout), f"timed out after {timeout} s waiting for {what}"


@pytest.mark.parametrize(
    "url",
    [
        "RECEIVER",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/hook",
        "http://[::ffff:127.0.0.1]/",
        "http://localhost/",
    ],
)
def test_internal_webhook_urls_are_refused_at_submit(
    stack: Stack, receiver: WebhookReceiver, url: str
) -> None:
    stack.env["GENQ_WEBHOOK_SECRET"] = DEFAULT_SECRET
    client = stack.client()
    with pytest.raises(WebhookUrlRefused) as info:
        client.submit({**CHAT, "webhook_url": receiver.url() if url == "RECEIVER" else url})
    body = info.value.to_body()["error"]
    assert body["code"] == "webhook_url_refused"
    assert "GENQ_WEBHOOK_ALLOW" in body["message"]
    assert client.store.list(tenant=None).records == []
    assert client.redis.keys("genq.*") == []
    assert receiver.hits() == []


def test_non_http_schemes_are_refused_at_submit(stack: Stack) -> None:
    stack.env["GENQ_WEBHOOK_SECRET"] = DEFAULT_SECRET
    client = stack.client()
    for url in ("file:///etc/passwd", "gopher://127.0.0.1:6379/_FLUSHALL"):
        with pytest.raises(InvalidRequest) as info:
            client.submit({**CHAT, "webhook_url": url})
        assert info.value.details[0]["field"] == "webhook_url"
    assert client.store.list(tenant=None).records == []


def test_a_webhook_nobody_could_sign_is_refused_at_submit(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    stack.env.update(LOOPBACK)  # no GENQ_WEBHOOK_SECRET
    client = stack.client()
    with pytest.raises(InvalidRequest) as info:
        client.submit({**CHAT, "webhook_url": receiver.url()})
    assert info.value.details[0]["field"] == "webhook_secret"
    record = client.submit(
        {**CHAT, "webhook_url": receiver.url(), "webhook_secret": DEFAULT_SECRET}
    )
    assert record.status.value == "queued"


def test_an_endpoint_refused_at_send_time_gets_no_traffic(
    stack: Stack, receiver: WebhookReceiver
) -> None:
    # Registered while loopback was allowed; the workers run without the allowlist.
    stack.env.update({"GENQ_WEBHOOK_RETRY_SCHEDULE_SECONDS": "0,1"})
    client = stack.client()
    allowed = stack.settings.model_copy(update={"webhook_allow": ["127.0.0.1/32"]})
    add_endpoint(client.store, allowed, tenant="default", url=receiver.url())
    stack.worker()
    stack.ops_worker()
    stack.beat()
    job_id = client.submit(CHAT).id

    def exhausted() -> bool:
        found = list_deliveries(client.store.engine, job_id=job_id)
        return bool(found) and found[0].status == "exhausted"

    wait_until(exhausted, 20, "the delivery to be exhausted")
    [delivery] = list_deliveries(client.store.engine, job_id=job_id)
    attempts = list_attempts(client.store.engine, delivery.id)
    assert len(attempts) == 2
    assert all("loopback" in (a.error or "") and a.status_code is None for a in attempts)
    assert receiver.hits() == []


def genq_cli(stack: Stack, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "genq", "webhooks", *args],
        env=process_env({**stack.env, "COLUMNS": "300"}),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def test_cli_endpoints_log_and_redelivery(stack: Stack, receiver: WebhookReceiver) -> None:
    stack.env.update(LOOPBACK)
    added = json.loads(
        genq_cli(
            stack,
            "endpoints",
            "add",
            "--tenant",
            "default",
            "--url",
            receiver.url(),
            "--events",
            "job.succeeded",
        ).stdout
    )
    first_secret = added["secret"]
    assert first_secret.startswith("whsec_") and added["events"] == ["job.succeeded"]
    refused = genq_cli(
        stack, "endpoints", "add", "--tenant", "default", "--url", "http://10.0.0.1/", ok=False
    )
    assert refused.returncode == 2
    assert json.loads(refused.stderr.splitlines()[0])["error"]["code"] == "webhook_url_refused"
    listed = genq_cli(stack, "endpoints", "list", "--json").stdout
    assert [e["id"] for e in json.loads(listed)] == [added["id"]]
    assert (
        first_secret not in listed
        and first_secret not in genq_cli(stack, "endpoints", "list").stdout
    )

    stack.worker()
    stack.ops_worker()
    client = stack.client()
    job_id = client.submit(CHAT).id
    [hit] = receiver.wait_for(1)
    assert hit.verify(first_secret)["data"]["id"] == job_id

    rotated = json.loads(
        genq_cli(
            stack, "endpoints", "rotate-secret", added["id"], "--overlap-seconds", "600"
        ).stdout
    )
    second_secret = rotated["secret"]
    assert second_secret != first_secret and len(rotated["secrets"]) == 2

    [delivery] = json.loads(genq_cli(stack, "deliveries", "--job", job_id, "--json").stdout)
    assert (delivery["status"], delivery["attempts"]) == ("succeeded", 1)
    assert json.loads(genq_cli(stack, "deliveries", "--status", "failed", "--json").stdout) == []
    table = genq_cli(stack, "deliveries", "--job", job_id).stdout
    assert job_id in table and "succeeded" in table
    shown = json.loads(genq_cli(stack, "attempts", delivery["id"], "--json").stdout)
    assert [a["status_code"] for a in shown["attempts"]] == [200]

    again = json.loads(genq_cli(stack, "redeliver", delivery["event_id"]).stdout)
    assert len(again["deliveries"]) == 1
    _, replay = receiver.wait_for(2)
    assert replay.webhook_id == hit.webhook_id == delivery["event_id"]
    assert replay.verify(first_secret) == replay.verify(second_secret)  # both sign it

    genq_cli(stack, "endpoints", "remove", added["id"])
    assert json.loads(genq_cli(stack, "endpoints", "list", "--json").stdout) == []
    missing = genq_cli(stack, "redeliver", "msg_nope", ok=False)
    assert missing.returncode == 1
    assert json.loads(missing.stderr)["error"]["code"] == "not_found"


@contextmanager
def serve(app: FastAPI) -> Iterator[httpx.Client]:
    """``app`` on a free loopback port (uvicorn in a thread), and a client for it."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 20, "uvicorn to start")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)


def test_admin_http_router(stack: Stack, receiver: WebhookReceiver) -> None:
    from producers.gateway import create_gateway
    from producers.gateway.routes_webhooks import router

    stack.env.update({**LOOPBACK, "GENQ_ADMIN_KEY": ADMIN_KEY})
    app = create_gateway(stack.settings)
    app.include_router(router)
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    base = "/v1/admin/webhooks"
    with serve(app) as http:
        assert http.get(f"{base}/endpoints").status_code == 401
        created = http.post(
            f"{base}/endpoints",
            json={"tenant": "default", "url": receiver.url(), "thin": True},
            headers=admin,
        )
        assert created.status_code == 201, created.text
        endpoint = created.json()
        assert endpoint["secret"].startswith("whsec_") and endpoint["thin"] is True
        refused = http.post(
            f"{base}/endpoints",
            json={"tenant": "default", "url": "http://169.254.169.254/"},
            headers=admin,
        )
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "webhook_url_refused"
        bad = http.post(
            f"{base}/endpoints",
            json={"tenant": "default", "url": receiver.url(), "events": ["job.nope"]},
            headers=admin,
        )
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
        listed = http.get(f"{base}/endpoints", headers=admin).json()["data"]
        assert [e["id"] for e in listed] == [endpoint["id"]]
        assert endpoint["secret"] not in json.dumps(listed)

        stack.worker()
        stack.ops_worker()
        client = stack.client()
        job_id = client.submit(CHAT).id
        [hit] = receiver.wait_for(1)
        assert hit.verify(endpoint["secret"])["data"] == {"id": job_id, "status": "succeeded"}

        rotated = http.post(
            f"{base}/endpoints/{endpoint['id']}/rotate-secret",
            json={"overlap_seconds": 0},
            headers=admin,
        ).json()
        assert len(rotated["secrets"]) == 1
        [delivery] = http.get(
            f"{base}/deliveries", params={"job_id": job_id}, headers=admin
        ).json()["data"]
        detail = http.get(f"{base}/deliveries/{delivery['id']}", headers=admin).json()
        assert [a["status_code"] for a in detail["attempts"]] == [200]
        assert (
            http.get(f"{base}/deliveries", params={"status": "odd"}, headers=admin).status_code
            == 400
        )
        redelivered = http.post(f"{base}/events/{delivery['event_id']}/redeliver", headers=admin)
        assert redelivered.status_code == 202
        _, replay = receiver.wait_for(2)
        assert replay.webhook_id == hit.webhook_id
        replay.verify(rotated["secret"])  # the old secret had no overlap: only the new signs
        assert len(replay.headers["webhook-signature"].split(" ")) == 1
        assert http.delete(f"{base}/endpoints/{endpoint['id']}", headers=admin).json()["removed"]
        assert http.delete(f"{base}/endpoints/{endpoint['id']}", headers=admin).status_code == 404
