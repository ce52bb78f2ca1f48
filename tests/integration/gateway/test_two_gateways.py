"""Two gateway processes behind one load balancer: requests alternate between them, and nothing
a client sees depends on which one answers. Each gateway is a "host" of its own (its host name
and data dir); they share Redis and a PostgreSQL store, as on separate machines."""

from __future__ import annotations

import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from httpx_sse import connect_sse

from tests.fakes.runtime_server import FakeRuntime
from tests.integration.conftest import Stack
from tests.integration.gateway.conftest import Gateway, GatewayStarter

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

CHAT = {"messages": [{"role": "user", "content": "two gateways"}]}
TOKENS = [f"w{i} " for i in range(30)]


def start_two(
    stack: Stack, start_gateway: GatewayStarter, store_url: str, root: Path, **extra: str
) -> tuple[Gateway, Gateway]:
    """Gateways on hosts "host-a" and "host-b" (own host names and data dirs, one store)."""
    stack.env["GENQ_DATABASE_URL"] = store_url
    started = []
    for name in ("host-a", "host-b"):
        (root / name).mkdir()
        started.append(start_gateway(hostname=name, data_dir=str(root / name), **extra))
    return started[0], started[1]


@pytest.fixture
def gateways(
    stack: Stack, start_gateway: GatewayStarter, fresh_postgres_url: str, tmp_path: Path
) -> tuple[Gateway, Gateway]:
    return start_two(stack, start_gateway, fresh_postgres_url, tmp_path)


def test_the_same_idempotency_key_on_either_gateway_is_the_same_job(
    gateways: tuple[Gateway, Gateway],
) -> None:
    a, b = gateways
    key = a.key("acme")
    apis = [a.client(key), b.client(key)]
    first = apis[0].post("/v1/jobs", json=CHAT, headers={"Idempotency-Key": "order-1"})
    again = apis[1].post("/v1/jobs", json=CHAT, headers={"Idempotency-Key": "order-1"})
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert first.json()["id"] == again.json()["id"]
    # At the same time on both: one job, created once.
    fresh = [a.client(key), b.client(key)]

    def post(api: httpx.Client) -> httpx.Response:
        return api.post("/v1/jobs", json=CHAT, headers={"Idempotency-Key": "order-2"})

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(post, [fresh[0], fresh[1], fresh[0], fresh[1]]))
    assert sorted(r.status_code for r in answers) == [200, 200, 200, 201], [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    listed = apis[0].get("/v1/jobs", params={"limit": 100}).json()["data"]
    assert len(listed) == 2  # order-1 and order-2, nothing else


def test_the_rate_limit_is_counted_across_both_gateways(
    stack: Stack, start_gateway: GatewayStarter, fresh_postgres_url: str, tmp_path: Path
) -> None:
    a, b = start_two(
        stack,
        start_gateway,
        fresh_postgres_url,
        tmp_path,
        rate_limit_per_second="0.01",
        rate_limit_burst="6",
    )
    key = a.key("acme")
    apis = itertools.cycle([a.client(key), b.client(key)])
    codes = [next(apis).get("/v1/jobs").status_code for _ in range(8)]
    # A burst of 6 (refilling at 0.01/s) shared by both: a per-gateway bucket would allow 8.
    assert codes == [200] * 6 + [429] * 2, codes
    refused = next(apis).get("/v1/jobs")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1


def test_a_stream_started_on_one_gateway_resumes_on_the_other(
    stack: Stack, gateways: tuple[Gateway, Gateway], fake_runtime: FakeRuntime
) -> None:
    a, b = gateways
    fake_runtime.configure(tokens=TOKENS, token_delay_seconds=0.05)
    stack.worker()
    key = a.key("acme")
    on_a, on_b = a.client(key), b.client(key)
    job_id = on_a.post("/v1/jobs", json=CHAT).json()["id"]
    timeout = httpx.Timeout(30, read=30)
    first = []
    with connect_sse(on_a, "GET", f"/v1/jobs/{job_id}/stream", timeout=timeout) as source:
        for event in source.iter_sse():
            first.append(event)
            if sum(e.event == "delta" for e in first) >= 5:
                break  # the client's connection to gateway A ends here
    rest = []
    headers = {"Last-Event-ID": first[-1].id}
    with connect_sse(
        on_b, "GET", f"/v1/jobs/{job_id}/stream", headers=headers, timeout=timeout
    ) as source:
        assert source.response.status_code == 200
        for event in source.iter_sse():
            rest.append(event)
            if event.event == "end":
                break
    ids = [int(e.id) for e in first + rest]
    assert ids == list(range(ids[0], ids[0] + len(ids))), ids  # no gap, no repeat
    text = "".join(json.loads(e.data)["delta"] for e in first + rest if e.event == "delta")
    final = on_a.get(f"/v1/jobs/{job_id}/wait", params={"timeout": 60}, timeout=70).json()
    assert final["status"] == "succeeded"
    assert text == final["result"]["text"] == "".join(TOKENS)
