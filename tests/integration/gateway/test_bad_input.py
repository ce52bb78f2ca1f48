"""Every kind of bad input gets a 4xx with a stable code, enqueues nothing, and the gateway
keeps serving. One gateway serves the whole module: no request here may be accepted."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import func, select

from genq.store import build_engine
from genq.store.migrate import current_revision, head_revision
from genq.store.tables import jobs
from tests.integration.gateway.conftest import (
    ADMIN_KEY,
    Gateway,
    gateway_env,
    wait_until_serving,
)
from tests.support import GenqProcess, RedisServer

pytestmark = pytest.mark.integration

CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
MAX_BODY_BYTES = 50_000
UNKNOWN = str(uuid.uuid4())


@pytest.fixture(scope="module")
def lone_gateway(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    if not redis_server.running:
        redis_server.restart()
    with redis_server.client() as client:
        client.flushall()
    data_dir = tmp_path_factory.mktemp("gateway-bad-input")
    env = gateway_env(
        {
            "GENQ_REDIS_URL": redis_server.url,
            "GENQ_DATA_DIR": str(data_dir),
            "GENQ_RUNTIME_URL": "http://127.0.0.1:9",
            "GENQ_LOG_JSON": "false",
        },
        max_body_bytes=str(MAX_BODY_BYTES),
    )
    process = GenqProcess(["gateway"], env, data_dir / "gateway.log").start()
    try:
        url = f"http://127.0.0.1:{env['GENQ_GATEWAY_PORT']}"
        wait_until_serving(url, process)
        gateway = Gateway(url=url, env=env, process=process)
        yield gateway
        gateway.close()
    finally:
        process.stop()


def test_a_gateway_alone_on_an_empty_data_dir_migrates_its_store(lone_gateway: Gateway) -> None:
    # No worker runs here: the store exists, at the head revision, because the gateway migrated
    # it at start like every other genq process (not ``create_all`` outside the migrations).
    assert current_revision(lone_gateway.settings.store_url) == head_revision()


@pytest.fixture(scope="module")
def api(lone_gateway: Gateway) -> httpx.Client:
    return lone_gateway.client(lone_gateway.key("acme"))


def assert_refused(
    answer: httpx.Response, status: int, code: str, gateway: Gateway, field: str | None = None
) -> None:
    """The answer, then: nothing reached the broker or the store, and the gateway still works."""
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code
    assert len(error["message"]) > 10
    if field is not None:
        assert field in [d.get("field") for d in error["details"]], error
    settings = gateway.settings
    with httpx.Client(base_url=gateway.url, timeout=5) as probe:
        assert probe.get("/healthz").status_code == 200
    engine = build_engine(settings.store_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(jobs)).scalar_one() == 0
    finally:
        engine.dispose()
    with redis.Redis.from_url(settings.redis_url) as client:
        assert client.keys("genq.*") == [] and client.keys("_kombu*") == []


def with_chat(**fields: Any) -> dict[str, Any]:
    return {**CHAT, **fields}


BAD_BODIES = [
    # (id, json body, status, code, field)
    ("unknown-field", with_chat(temperatur=0.5), 400, "invalid_request", "temperatur"),
    ("empty-model", with_chat(model=""), 400, "invalid_request", "model"),
    ("bad-model-name", with_chat(model="no spaces allowed"), 400, "invalid_request", "model"),
    ("missing-messages", {"kind": "chat"}, 400, "invalid_request", "body"),
    ("empty-messages", {"messages": []}, 400, "invalid_request", "body"),
    (
        "bad-role",
        {"messages": [{"role": "robot", "content": "x"}]},
        400,
        "invalid_request",
        "messages.0.role",
    ),
    ("temperature-5", with_chat(temperature=5), 400, "invalid_request", "temperature"),
    ("max-tokens-0", with_chat(max_tokens=0), 400, "invalid_request", "max_tokens"),
    ("top-p-0", with_chat(top_p=0), 400, "invalid_request", "top_p"),
    ("five-stops", with_chat(stop=["a", "b", "c", "d", "e"]), 400, "invalid_request", "stop"),
    ("priority-10", with_chat(priority=10), 400, "invalid_request", "priority"),
    ("priority-minus-1", with_chat(priority=-1), 400, "invalid_request", "priority"),
    ("priority-word", with_chat(priority="high"), 400, "invalid_request", "priority"),
    # Booleans are not numbers: JSON true must not become priority 1.
    ("priority-true", with_chat(priority=True), 400, "invalid_request", "priority"),
    ("priority-false", with_chat(priority=False), 400, "invalid_request", "priority"),
    ("max-tokens-true", with_chat(max_tokens=True), 400, "invalid_request", "max_tokens"),
    ("seed-true", with_chat(seed=True), 400, "invalid_request", "seed"),
    ("top-k-true", with_chat(top_k=True), 400, "invalid_request", "top_k"),
    ("temperature-true", with_chat(temperature=True), 400, "invalid_request", "temperature"),
    ("expires-in-true", with_chat(expires_in=True), 400, "invalid_request", "expires_in"),
    ("unknown-lane", with_chat(lane="express"), 400, "invalid_request", "lane"),
    (
        "webhook-ftp",
        with_chat(webhook_url="ftp://example.test/hook"),
        400,
        "invalid_request",
        "webhook_url",
    ),
    (
        "webhook-file",
        with_chat(webhook_url="file:///etc/passwd"),
        400,
        "invalid_request",
        "webhook_url",
    ),
    ("webhook-not-url", with_chat(webhook_url="not a url"), 400, "invalid_request", "webhook_url"),
    ("naive-deadline", with_chat(deadline="2030-01-01T00:00:00"), 400, "invalid_request", "body"),
    ("negative-expires-in", with_chat(expires_in=-5), 400, "invalid_request", "expires_in"),
    (
        "extreme-deadline",
        with_chat(deadline="0001-01-01T00:00:00+14:00"),
        400,
        "invalid_request",
        "deadline",
    ),
    ("not-an-object", [CHAT], 400, "invalid_request", "body"),
]


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
def test_bad_job_bodies(
    api: httpx.Client, lone_gateway: Gateway, body: Any, status: int, code: str, field: str
) -> None:
    assert_refused(api.post("/v1/jobs", json=body), status, code, lone_gateway, field)


BAD_RAW_BODIES = [
    ("malformed-json", b'{"messages": [', "application/json", 400, "invalid_request"),
    ("empty-body", b"", "application/json", 400, "invalid_request"),
    ("not-utf8", b'{"messages": "\xff\xfe"}', "application/json", 400, "invalid_request"),
    ("deeply-nested", b"[" * 40_000, "application/json", 400, "invalid_request"),
    ("text-plain", json.dumps(CHAT).encode(), "text/plain", 415, "unsupported_media_type"),
    ("form", b"messages=hi", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ("no-content-type", json.dumps(CHAT).encode(), None, 415, "unsupported_media_type"),
]


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [case[1:] for case in BAD_RAW_BODIES],
    ids=[case[0] for case in BAD_RAW_BODIES],
)
def test_bad_raw_bodies(
    api: httpx.Client,
    lone_gateway: Gateway,
    content: bytes,
    content_type: str | None,
    status: int,
    code: str,
) -> None:
    request = api.build_request("POST", "/v1/jobs", content=content)
    if content_type is not None:
        request.headers["Content-Type"] = content_type
    assert request.headers.get("Content-Type") == content_type
    assert_refused(api.send(request), status, code, lone_gateway)


def test_oversized_body_declared_length(api: httpx.Client, lone_gateway: Gateway) -> None:
    body = with_chat(
        metadata={"pad": "x" * 500},
        messages=[{"role": "user", "content": "y" * (MAX_BODY_BYTES + 10)}],
    )
    answer = api.post("/v1/jobs", json=body)
    assert_refused(answer, 413, "payload_too_large", lone_gateway)


def test_oversized_body_chunked(api: httpx.Client, lone_gateway: Gateway) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(MAX_BODY_BYTES // 1000 + 5):
            yield b"z" * 1000
        yield b'"}]}'

    answer = api.post("/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in {k.lower() for k in answer.request.headers}
    assert_refused(answer, 413, "payload_too_large", lone_gateway)


def test_idempotency_header_and_body_differ(api: httpx.Client, lone_gateway: Gateway) -> None:
    answer = api.post(
        "/v1/jobs", json=with_chat(idempotency_key="a"), headers={"Idempotency-Key": "b"}
    )
    assert_refused(answer, 400, "invalid_request", lone_gateway, "idempotency_key")


BAD_READS = [
    # (id, method, path, params, headers, status, code)
    ("get-non-uuid", "GET", "/v1/jobs/not-a-uuid", {}, {}, 400, "invalid_request"),
    ("wait-non-uuid", "GET", "/v1/jobs/123/wait", {}, {}, 400, "invalid_request"),
    ("stream-non-uuid", "GET", "/v1/jobs/x/stream", {}, {}, 400, "invalid_request"),
    ("cancel-non-uuid", "POST", "/v1/jobs/x/cancel", {}, {}, 400, "invalid_request"),
    ("get-unknown", "GET", f"/v1/jobs/{UNKNOWN}", {}, {}, 404, "not_found"),
    ("wait-unknown", "GET", f"/v1/jobs/{UNKNOWN}/wait", {}, {}, 404, "not_found"),
    ("stream-unknown", "GET", f"/v1/jobs/{UNKNOWN}/stream", {}, {}, 404, "not_found"),
    ("cancel-unknown", "POST", f"/v1/jobs/{UNKNOWN}/cancel", {}, {}, 404, "not_found"),
    ("bad-cursor", "GET", "/v1/jobs", {"cursor": "!!!not-a-cursor"}, {}, 400, "invalid_request"),
    (
        "forged-cursor",
        "GET",
        "/v1/jobs",
        {"cursor": base64.urlsafe_b64encode(b"2030-01-01T00:00:00|x").decode()},
        {},
        400,
        "invalid_request",
    ),
    ("bad-status", "GET", "/v1/jobs", {"status": "done"}, {}, 400, "invalid_request"),
    ("limit-0", "GET", "/v1/jobs", {"limit": 0}, {}, 400, "invalid_request"),
    ("limit-huge", "GET", "/v1/jobs", {"limit": 100000}, {}, 400, "invalid_request"),
    ("limit-word", "GET", "/v1/jobs", {"limit": "all"}, {}, 400, "invalid_request"),
    ("list-unknown-lane", "GET", "/v1/jobs", {"lane": "express"}, {}, 400, "invalid_request"),
    (
        "negative-timeout",
        "GET",
        f"/v1/jobs/{UNKNOWN}/wait",
        {"timeout": -1},
        {},
        400,
        "invalid_request",
    ),
    (
        "huge-timeout",
        "GET",
        f"/v1/jobs/{UNKNOWN}/wait",
        {"timeout": 301},
        {},
        400,
        "invalid_request",
    ),
    (
        "nan-timeout",
        "GET",
        f"/v1/jobs/{UNKNOWN}/wait",
        {"timeout": "nan"},
        {},
        400,
        "invalid_request",
    ),
    (
        "word-timeout",
        "GET",
        f"/v1/jobs/{UNKNOWN}/wait",
        {"timeout": "soon"},
        {},
        400,
        "invalid_request",
    ),
    (
        "last-event-id-word",
        "GET",
        f"/v1/jobs/{UNKNOWN}/stream",
        {},
        {"Last-Event-ID": "abc"},
        400,
        "invalid_request",
    ),
    (
        "last-event-id-negative",
        "GET",
        f"/v1/jobs/{UNKNOWN}/stream",
        {},
        {"Last-Event-ID": "-1"},
        400,
        "invalid_request",
    ),
    (
        "last-event-id-fraction",
        "GET",
        f"/v1/jobs/{UNKNOWN}/stream",
        {},
        {"Last-Event-ID": "1.5"},
        400,
        "invalid_request",
    ),
    (
        "last-event-id-huge",
        "GET",
        f"/v1/jobs/{UNKNOWN}/stream",
        {},
        {"Last-Event-ID": "9" * 25},
        400,
        "invalid_request",
    ),
    (
        "starting-after-negative",
        "GET",
        f"/v1/jobs/{UNKNOWN}/stream",
        {"starting_after": -1},
        {},
        400,
        "invalid_request",
    ),
    ("no-such-endpoint", "GET", "/v1/nothing", {}, {}, 404, "not_found"),
    ("wrong-method", "DELETE", f"/v1/jobs/{UNKNOWN}", {}, {}, 405, "invalid_request"),
]


@pytest.mark.parametrize(
    ("method", "path", "params", "headers", "status", "code"),
    [case[1:] for case in BAD_READS],
    ids=[case[0] for case in BAD_READS],
)
def test_bad_reads(
    api: httpx.Client,
    lone_gateway: Gateway,
    method: str,
    path: str,
    params: dict[str, Any],
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    answer = api.request(method, path, params=params, headers=headers)
    assert_refused(answer, status, code, lone_gateway)


@pytest.mark.parametrize(
    "webhook_url", ["http://127.0.0.1:9/hook", "http://10.0.0.1/hook"], ids=["loopback", "private"]
)
def test_webhook_to_an_internal_address_is_refused(
    api: httpx.Client, lone_gateway: Gateway, webhook_url: str
) -> None:
    """The SSRF guard runs before the job is stored (only the scheme is a schema check)."""
    body = with_chat(webhook_url=webhook_url, webhook_secret="whsec_" + "A" * 32)
    answer = api.post("/v1/jobs", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] in {"invalid_request", "webhook_url_refused"}
    assert_refused(answer, 400, answer.json()["error"]["code"], lone_gateway)


def test_a_boolean_is_not_a_number_in_the_admin_api(lone_gateway: Gateway) -> None:
    admin = lone_gateway.client(ADMIN_KEY)
    added = admin.post(
        "/v1/admin/webhooks/endpoints",
        json={"tenant": "acme", "url": "https://93.184.215.14/genq"},  # a public address
    )
    assert added.status_code == 201, added.text
    rotated = admin.post(
        f"/v1/admin/webhooks/endpoints/{added.json()['id']}/rotate-secret",
        json={"overlap_seconds": True},
    )
    assert rotated.status_code == 400, rotated.text
    assert rotated.json()["error"]["code"] == "invalid_request"
    assert rotated.json()["error"]["details"][0]["field"].endswith("overlap_seconds")
