"""Submitting, reading, listing and long-polling jobs over HTTP, with tenants and idempotency."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.integration.conftest import Stack
from tests.integration.gateway.conftest import ADMIN_KEY, Gateway, GatewayStarter
from tests.support import eventually, stream_reader_blocked
from tests.support.environment import process_env

pytestmark = pytest.mark.integration

CHAT = {"messages": [{"role": "user", "content": "say hello"}]}


def job_count(stack: Stack) -> int:
    return len(stack.client("*").store.list(tenant=None, limit=1000).records)


def test_submit_get_wait_succeeds(stack: Stack, gateway: Gateway) -> None:
    stack.worker()
    api = gateway.client(gateway.key("acme"))
    created = api.post("/v1/jobs", json={**CHAT, "priority": 7, "metadata": {"team": "x"}})
    assert created.status_code == 201, created.text
    job = created.json()
    assert created.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["tenant"] == "acme" and job["priority"] == 7
    fetched = api.get(f"/v1/jobs/{job['id']}")
    assert fetched.status_code == 200 and fetched.json()["id"] == job["id"]
    started = time.monotonic()
    done = api.get(f"/v1/jobs/{job['id']}/wait", params={"timeout": 20}, timeout=30)
    assert done.status_code == 200
    assert done.json()["status"] == "succeeded"
    assert done.json()["result"]["text"] == "Hello, world!"
    assert time.monotonic() - started < 10


def test_concurrent_submissions_are_accepted_in_groups_each_its_own_job(
    stack: Stack, gateway: Gateway
) -> None:
    # Concurrent jobs without a key share store transactions (batcher.py): each still gets its
    # own record as stored, with its own priority and lane, and each one runs.
    stack.worker()
    key = gateway.key("acme")

    def submit(i: int) -> httpx.Response:
        with httpx.Client(base_url=gateway.url, timeout=30) as client:
            body = {**CHAT, "priority": i % 10, "lane": ["interactive", "batch"][i % 2]}
            return client.post("/v1/jobs", json=body, headers={"Authorization": f"Bearer {key}"})

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(submit, range(40)))
    assert [a.status_code for a in answers] == [201] * 40, [a.text for a in answers]
    records = [a.json() for a in answers]
    assert len({r["id"] for r in records}) == 40
    assert [(r["priority"], r["lane"]) for r in records] == [
        (i % 10, ["interactive", "batch"][i % 2]) for i in range(40)
    ]
    api = gateway.client(key)
    for record in records:
        assert api.get(f"/v1/jobs/{record['id']}").json()["tenant"] == "acme"
        done = api.get(f"/v1/jobs/{record['id']}/wait", params={"timeout": 30}, timeout=40)
        assert done.json()["status"] == "succeeded", done.text
    assert job_count(stack) == 40


def test_wait_returns_current_record_at_timeout(stack: Stack, gateway: Gateway) -> None:
    api = gateway.client(gateway.key("acme"))
    job = api.post("/v1/jobs", json=CHAT).json()  # no worker: it stays queued
    started = time.monotonic()
    waited = api.get(f"/v1/jobs/{job['id']}/wait", params={"timeout": 1})
    elapsed = time.monotonic() - started
    assert waited.status_code == 200 and waited.json()["status"] == "queued"
    assert 0.9 <= elapsed < 3


def test_wait_wakes_when_the_job_finishes(stack: Stack, gateway: Gateway) -> None:
    api = gateway.client(gateway.key("acme"))
    job = api.post("/v1/jobs", json=CHAT).json()
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(
            api.get, f"/v1/jobs/{job['id']}/wait", params={"timeout": 60}, timeout=70
        )
        assert eventually(lambda: stream_reader_blocked(stack.client().redis))  # it waits
        stack.worker()
        finished_at = time.monotonic()
        answer = waiting.result(timeout=60)
    assert answer.json()["status"] == "succeeded"
    assert time.monotonic() - finished_at < 5  # woke on the stream's end entry, not at 60 s


def test_list_is_newest_first_with_cursor_and_filters(stack: Stack, gateway: Gateway) -> None:
    api = gateway.client(gateway.key("acme"))
    ids = [
        api.post("/v1/jobs", json={**CHAT, "lane": lane}).json()["id"]
        for lane in ["interactive", "batch", "interactive", "batch", "interactive"]
    ]
    first = api.get("/v1/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in first["data"]] == ids[::-1][:2]
    second = api.get("/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    third = api.get("/v1/jobs", params={"limit": 2, "cursor": second["next_cursor"]}).json()
    assert [j["id"] for j in second["data"] + third["data"]] == ids[::-1][2:]
    assert third["next_cursor"] is None
    batch = api.get("/v1/jobs", params={"lane": "batch"}).json()["data"]
    assert sorted(j["id"] for j in batch) == sorted([ids[1], ids[3]])
    assert api.get("/v1/jobs", params={"status": "succeeded"}).json()["data"] == []
    assert len(api.get("/v1/jobs", params={"status": "queued"}).json()["data"]) == 5


def test_idempotency_replay_conflict_and_mismatch(stack: Stack, gateway: Gateway) -> None:
    api = gateway.client(gateway.key("acme"))
    key = {"Idempotency-Key": "order-42"}
    first = api.post("/v1/jobs", json=CHAT, headers=key)
    assert first.status_code == 201
    replay = api.post("/v1/jobs", json=CHAT, headers=key)
    assert replay.status_code == 200 and replay.json()["id"] == first.json()["id"]
    in_body = api.post("/v1/jobs", json={**CHAT, "idempotency_key": "order-42"})
    assert in_body.status_code == 200 and in_body.json()["id"] == first.json()["id"]
    other_body = api.post("/v1/jobs", json={**CHAT, "priority": 9}, headers=key)
    assert other_body.status_code == 409
    assert other_body.json()["error"]["code"] == "conflict"
    both = api.post("/v1/jobs", json={**CHAT, "idempotency_key": "other"}, headers=key)
    assert both.status_code == 400 and both.json()["error"]["code"] == "invalid_request"
    # Keys are per tenant: another tenant's same key is a new job.
    other_tenant = gateway.client(gateway.key("globex")).post("/v1/jobs", json=CHAT, headers=key)
    assert other_tenant.status_code == 201
    assert other_tenant.json()["id"] != first.json()["id"]
    assert job_count(stack) == 2


def test_twenty_concurrent_identical_submissions_make_one_job(
    stack: Stack, gateway: Gateway
) -> None:
    key = gateway.key("acme")

    def submit(_: int) -> httpx.Response:
        with httpx.Client(base_url=gateway.url, timeout=30) as client:
            return client.post(
                "/v1/jobs",
                json=CHAT,
                headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "burst-1"},
            )

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(submit, range(20)))
    assert sorted(a.status_code for a in answers) == [200] * 19 + [201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert job_count(stack) == 1


def test_tenants_see_only_their_own_jobs(stack: Stack, gateway: Gateway) -> None:
    acme = gateway.client(gateway.key("acme"))
    globex = gateway.client(gateway.key("globex"))
    job_id = acme.post("/v1/jobs", json=CHAT).json()["id"]
    missing_id = str(uuid.uuid4())
    for path in ("", "/wait?timeout=0", "/stream", "/cancel"):
        method = "POST" if path == "/cancel" else "GET"
        theirs = globex.request(method, f"/v1/jobs/{job_id}{path}")
        nobody = globex.request(method, f"/v1/jobs/{missing_id}{path}")
        assert theirs.status_code == nobody.status_code == 404
        assert theirs.json()["error"]["code"] == "not_found"
        assert theirs.json() == {
            **nobody.json(),
            "error": {
                **nobody.json()["error"],
                "message": nobody.json()["error"]["message"].replace(missing_id, job_id),
            },
        }
    assert globex.get("/v1/jobs").json()["data"] == []
    assert acme.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"  # cancel did nothing
    admin = gateway.client(ADMIN_KEY)
    assert admin.get(f"/v1/jobs/{job_id}").status_code == 200
    stored_admin = gateway.client(gateway.key("ops", admin=True))
    assert [j["id"] for j in stored_admin.get("/v1/jobs").json()["data"]] == [job_id]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer genq_not-a-real-key"},
        {"Authorization": "Basic YTpi"},
        {"Authorization": "Bearer"},
    ],
    ids=["no-key", "unknown-key", "wrong-scheme", "empty"],
)
def test_401_without_a_valid_key(stack: Stack, gateway: Gateway, headers: dict[str, str]) -> None:
    anonymous = gateway.client()
    for method, path in [
        ("POST", "/v1/jobs"),
        ("GET", "/v1/jobs"),
        ("GET", f"/v1/jobs/{uuid.uuid4()}"),
    ]:
        answer = anonymous.request(method, path, json=CHAT, headers=headers)
        assert answer.status_code == 401, (method, path, answer.text)
        assert answer.json()["error"]["code"] == "unauthorized"
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert job_count(stack) == 0
    assert anonymous.get("/healthz").status_code == 200


def run_genq(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "genq", *argv],
        env=process_env(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_keys_cli_create_list_revoke(stack: Stack, start_gateway: GatewayStarter) -> None:
    gateway = start_gateway(gateway_key_cache_seconds="0")
    created = run_genq(["keys", "create", "--tenant", "acme", "--name", "billing"], gateway.env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("genq_") and len(key) > 40 and "\n" not in key
    api = gateway.client(key)
    job_id = api.post("/v1/jobs", json=CHAT).json()["id"]
    assert api.get(f"/v1/jobs/{job_id}").status_code == 200

    listed = run_genq(["keys", "list"], gateway.env)
    assert listed.returncode == 0 and key not in listed.stdout
    (entry,) = json.loads(listed.stdout)
    assert entry["tenant"] == "acme" and entry["name"] == "billing" and not entry["admin"]
    assert key.startswith(entry["prefix"]) and entry["revoked_at"] is None

    admin = run_genq(["keys", "create", "--tenant", "ops", "--admin"], gateway.env).stdout.strip()
    assert gateway.client(admin).get(f"/v1/jobs/{job_id}").status_code == 200

    revoked = run_genq(["keys", "revoke", entry["id"]], gateway.env)
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["revoked_at"]
    refused = api.get(f"/v1/jobs/{job_id}")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"

    unknown = run_genq(["keys", "revoke", str(uuid.uuid4())], gateway.env)
    assert unknown.returncode == 1 and json.loads(unknown.stderr)["error"]["code"] == "not_found"
    bad_tenant = run_genq(["keys", "create", "--tenant", "no spaces"], gateway.env)
    assert bad_tenant.returncode == 2


def test_rate_limit_answers_429_with_retry_after(
    stack: Stack, start_gateway: GatewayStarter
) -> None:
    # A token every 5 s: the four requests below fall inside one refill however slow the
    # machine is (at 1/s, a loaded machine let the fourth through).
    gateway = start_gateway(rate_limit_per_second="0.2", rate_limit_burst="3")
    api = gateway.client(gateway.key("acme"))
    answers = [api.get("/v1/jobs") for _ in range(4)]
    assert [a.status_code for a in answers[:3]] == [200, 200, 200]
    limited = answers[3]
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 5
    # Another key has its own bucket; and the first refills at the given rate: a client that
    # waits what Retry-After says gets through (waiting longer only adds tokens).
    assert gateway.client(gateway.key("acme")).get("/v1/jobs").status_code == 200
    time.sleep(float(limited.headers["Retry-After"]))  # the contract under test is the wait
    assert api.get("/v1/jobs").status_code == 200


def test_queued_cap_answers_429(stack: Stack, start_gateway: GatewayStarter) -> None:
    gateway = start_gateway(max_queued_per_tenant="2")
    api = gateway.client(gateway.key("acme"))
    first = api.post("/v1/jobs", json=CHAT, headers={"Idempotency-Key": "a"})
    assert first.status_code == 201
    assert api.post("/v1/jobs", json=CHAT).status_code == 201
    full = api.post("/v1/jobs", json=CHAT)
    assert full.status_code == 429
    assert full.json()["error"]["code"] == "queue_full"
    assert int(full.headers["Retry-After"]) >= 1
    # A retry of an accepted job still gets it back; other tenants are not affected.
    replay = api.post("/v1/jobs", json=CHAT, headers={"Idempotency-Key": "a"})
    assert replay.status_code == 200 and replay.json()["id"] == first.json()["id"]
    assert gateway.client(gateway.key("globex")).post("/v1/jobs", json=CHAT).status_code == 201
    assert job_count(stack) == 3
