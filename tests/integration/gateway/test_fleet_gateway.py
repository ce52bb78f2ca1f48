"""The runtime fleet seen from the front door: models from the fleet (declared and discovered),
unknown models refused at submit, the admin view, /readyz, ``genq runtimes``, and an endpoint
whose runtime is gone going into cooldown while its jobs follow the retry rules."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.runtime_server import FakeRuntime
from tests.integration.conftest import Stack
from tests.integration.gateway.conftest import ADMIN_KEY, GatewayStarter
from tests.support import eventually
from tests.support.environment import process_env


@pytest.fixture
def two_fakes() -> Iterator[tuple[FakeRuntime, FakeRuntime]]:
    with (
        FakeRuntime(known_models=["alpha"], slots=2) as a,
        FakeRuntime(known_models=["beta", "gamma"]) as b,
    ):
        yield a, b


def job(model: str) -> dict[str, object]:
    return {"model": model, "kind": "completion", "prompt": "hi"}


def declare(stack: Stack, tmp_path: Path, a: FakeRuntime, b: FakeRuntime) -> None:
    path = tmp_path / "runtimes.yaml"
    path.write_text(
        "endpoints:\n"
        f"  - {{name: a, kind: openai, url: '{a.url}', models: [alpha], slots: 2}}\n"
        f"  - {{name: b, kind: openai, url: '{b.url}', slots: 1, weight: 2}}\n"  # discovers
    )
    stack.env["GENQ_RUNTIMES_FILE"] = str(path)
    stack.env["GENQ_FLEET_TICK_SECONDS"] = "0.2"


def test_models_come_from_the_fleet_and_unknown_ones_are_refused_at_submit(
    stack: Stack,
    start_gateway: GatewayStarter,
    two_fakes: tuple[FakeRuntime, FakeRuntime],
    tmp_path: Path,
) -> None:
    a, b = two_fakes
    declare(stack, tmp_path, a, b)
    gateway = start_gateway()
    client = gateway.client(gateway.key("acme"))

    listed = client.get("/v1/models").json()
    assert listed["object"] == "list"
    assert [m["id"] for m in listed["data"]] == ["alpha", "beta", "gamma"]

    refused = client.post("/v1/jobs", json=job("nope"))
    assert refused.status_code == 404, refused.text
    error = refused.json()["error"]
    assert error["code"] == "model_not_found"
    assert error["details"][0]["models"] == ["alpha", "beta", "gamma"]

    stack.worker("--concurrency", "3")
    accepted = client.post("/v1/jobs", json=job("gamma") | {"max_tokens": 4})
    assert accepted.status_code == 201, accepted.text
    job_id = accepted.json()["id"]
    done = client.get(f"/v1/jobs/{job_id}/wait", params={"timeout": 30}).json()
    assert done["status"] == "succeeded", done
    assert b.stats()["job_requests_seen"] == 1 and a.stats()["job_requests_seen"] == 0

    admin = gateway.client(ADMIN_KEY).get("/v1/admin/runtimes").json()
    rows = {row["name"]: row for row in admin["endpoints"]}
    assert rows["a"]["models"] == ["alpha"] and rows["a"]["slots"] == 2
    assert rows["b"]["models"] == ["beta", "gamma"] and rows["b"]["requests"] == 1
    assert {row["state"] for row in rows.values()} == {"healthy"}
    assert gateway.client().get("/v1/admin/runtimes").status_code == 401

    cli = subprocess.run(
        [sys.executable, "-m", "genq", "runtimes", "--json"],
        env=process_env(stack.env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert [row["name"] for row in json.loads(cli.stdout)["endpoints"]] == ["a", "b"]
    table = subprocess.run(
        [sys.executable, "-m", "genq", "runtimes"],
        env=process_env(stack.env) | {"COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert table.returncode == 0, table.stderr
    assert "beta, gamma" in table.stdout and "healthy" in table.stdout


def test_a_dead_endpoint_goes_into_cooldown_and_its_jobs_follow_the_retry_rules(
    stack: Stack,
    start_gateway: GatewayStarter,
    two_fakes: tuple[FakeRuntime, FakeRuntime],
    tmp_path: Path,
) -> None:
    a, b = two_fakes
    declare(stack, tmp_path, a, b)
    stack.env["GENQ_FLEET_BREAKER_COOLDOWN_SECONDS"] = "2"
    gateway = start_gateway()
    client = gateway.client(gateway.key("acme"))
    stack.worker("--concurrency", "3")
    a.stop()  # nothing listens there any more: a refused connection puts it in cooldown

    job_id = client.post("/v1/jobs", json=job("alpha")).json()["id"]
    # GENQ_RUNTIME_WAIT_SECONDS=1 (FAST_TIMINGS): with no healthy endpoint for its model the
    # job waits that long per attempt, then the attempt fails; retries run out.
    done = client.get(f"/v1/jobs/{job_id}/wait", params={"timeout": 60}).json()
    assert done["status"] == "dead_lettered", done
    assert done["error"]["code"] == "retries_exhausted"

    ready = gateway.client().get("/readyz").json()
    detail = ready["checks"]["runtime"]["detail"]
    assert "a: cooldown" in detail and "b: healthy" in detail, detail
    assert ready["checks"]["runtime"]["ok"]  # b still serves its models
    rows = {
        r["name"]: r
        for r in gateway.client(ADMIN_KEY).get("/v1/admin/runtimes").json()["endpoints"]
    }
    assert rows["a"]["state"] == "cooldown" and rows["a"]["errors"] >= 1
    metrics = gateway.client(ADMIN_KEY).get("/metrics").text
    assert 'genq_runtime_up{endpoint="a"} 0.0' in metrics
    assert 'genq_runtime_up{endpoint="b"} 1.0' in metrics
    assert 'genq_runtime_slots{endpoint="a"} 2.0' in metrics

    # b is untouched: its jobs run.
    other = client.post("/v1/jobs", json=job("beta")).json()["id"]
    assert client.get(f"/v1/jobs/{other}/wait", params={"timeout": 30}).json()["status"] == (
        "succeeded"
    )
    assert eventually(lambda: b.stats()["streams_completed"] == 1, timeout=5)

    # a's runtime comes back on its port: a probe (not a job) takes it out of cooldown.
    a.start()

    def state_of_a() -> str:
        rows = gateway.client(ADMIN_KEY).get("/v1/admin/runtimes").json()["endpoints"]
        return str(next(row["state"] for row in rows if row["name"] == "a"))

    assert eventually(lambda: state_of_a() == "healthy", timeout=30)
    assert a.stats()["job_requests_seen"] == 0  # probed with its model list only
    back = client.post("/v1/jobs", json=job("alpha")).json()["id"]
    assert client.get(f"/v1/jobs/{back}/wait", params={"timeout": 30}).json()["status"] == (
        "succeeded"
    )
