"""The gateway's pure decisions: input checks, resume points, error statuses, the key cache."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest

from producers.gateway import inputs
from producers.gateway.cache import TtlCache
from producers.gateway.errors import (
    PayloadTooLarge,
    RedisUnavailable,
    error_response,
    status_for,
    validation_details,
)
from producers.gateway.streaming import MAX_SEQ, resume_point
from schemas import (
    BrokerUnavailable,
    Conflict,
    GenqError,
    InvalidRequest,
    NotFound,
    RateLimited,
    TransientError,
    Unauthorized,
)
from schemas.errors import ErrorCode

CHAT = b'{"messages": [{"role": "user", "content": "hi"}]}'


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidRequest("x"), 400),
        (Unauthorized("x"), 401),
        (GenqError("x", code=ErrorCode.FORBIDDEN), 403),
        (NotFound("x"), 404),
        (Conflict("x"), 409),
        (PayloadTooLarge("x"), 413),
        (GenqError("x", code=ErrorCode.UNSUPPORTED_MEDIA_TYPE), 415),
        (RateLimited("x", retry_after_seconds=1), 429),
        (RateLimited("x", retry_after_seconds=1, code=ErrorCode.QUEUE_FULL), 429),
        (BrokerUnavailable("x"), 503),
        (TransientError("x", code=ErrorCode.INTERNAL), 503),
        (GenqError("x"), 500),
    ],
)
def test_status_for_each_code(error: GenqError, status: int) -> None:
    assert status_for(error) == status


@pytest.mark.parametrize(
    ("error", "retry_after"),
    [
        (RateLimited("x", retry_after_seconds=0.2), "1"),
        (RateLimited("x", retry_after_seconds=2.5), "3"),
        (RedisUnavailable("x"), "2"),
        (InvalidRequest("x"), None),
    ],
)
def test_retry_after_header(error: GenqError, retry_after: str | None) -> None:
    assert error_response(error).headers.get("Retry-After") == retry_after


def test_unauthorized_names_the_scheme() -> None:
    assert error_response(Unauthorized("x")).headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("last_event_id", "starting_after", "expected"),
    [
        (None, None, 0),
        (None, 7, 7),
        ("12", None, 12),
        ("12", 3, 12),
        ("", 4, 4),
        (" 5 ", None, 5),
        (str(MAX_SEQ), None, MAX_SEQ),
    ],
)
def test_resume_point(last_event_id: str | None, starting_after: int | None, expected: int) -> None:
    assert resume_point(last_event_id, starting_after) == expected


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "1e3", "١٢", str(MAX_SEQ + 1)])
def test_resume_point_refuses_non_numbers(value: str) -> None:
    with pytest.raises(InvalidRequest):
        resume_point(value, None)


@pytest.mark.parametrize(
    ("content_type", "ok"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("Application/JSON", True),
        ("application/merge-patch+json", True),
        ("text/json", False),
        ("text/plain", False),
        ("", False),
        (None, False),
    ],
)
def test_json_media_types(content_type: str | None, ok: bool) -> None:
    assert inputs.is_json_media_type(content_type) is ok


@pytest.mark.parametrize(
    ("content_type", "body", "code"),
    [
        ("text/plain", CHAT, ErrorCode.UNSUPPORTED_MEDIA_TYPE),
        ("application/json", b"{", ErrorCode.INVALID_REQUEST),
        ("application/json", b"", ErrorCode.INVALID_REQUEST),
        ("application/json", b"\xff", ErrorCode.INVALID_REQUEST),
        ("application/json", b"[" * 100_000, ErrorCode.INVALID_REQUEST),
        ("application/json", b"[1]", ErrorCode.INVALID_REQUEST),
        ("application/json", b'{"messages": []}', ErrorCode.INVALID_REQUEST),
        (
            "application/json",
            b'{"messages": [{"role": "user", "content": "x"}], "deadline": '
            b'"0001-01-01T00:00:00+14:00"}',
            ErrorCode.INVALID_REQUEST,
        ),
    ],
)
def test_job_request_refusals(content_type: str, body: bytes, code: ErrorCode) -> None:
    with pytest.raises(GenqError) as info:
        inputs.job_request(content_type, body, None)
    assert info.value.code is code


def test_idempotency_key_header_joins_the_body() -> None:
    assert inputs.job_request("application/json", CHAT, "k1").idempotency_key == "k1"
    same: dict[str, Any] = {"idempotency_key": "k1"}
    assert inputs.with_idempotency_key(same, "k1") == same
    with pytest.raises(InvalidRequest, match="differ"):
        inputs.with_idempotency_key({"idempotency_key": "k2"}, "k1")
    assert inputs.with_idempotency_key({"a": 1}, None) == {"a": 1}


def test_job_id_is_canonical_or_refused() -> None:
    upper = "3F2B8C1E-0A4D-4E5F-9B6A-7C8D9E0F1A2B"
    assert inputs.job_id(upper) == upper.lower()
    with pytest.raises(InvalidRequest, match="UUID"):
        inputs.job_id("x" * 500)


@pytest.mark.parametrize(
    "raw",
    [
        b"no separator",
        b"2030-01-01T00:00:00|naive",
        b"9999-12-31T23:59:59-14:00|overflow",
        b"\xff\xfe|x",
    ],
)
def test_forged_cursors_are_refused(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        inputs.cursor(base64.urlsafe_b64encode(raw).decode())


def test_valid_cursor_passes() -> None:
    raw = base64.urlsafe_b64encode(b"2030-01-01T00:00:00+00:00|abc").decode().rstrip("=")
    assert inputs.cursor(raw) == raw
    assert inputs.cursor(None) is None


def test_validation_details_name_field_and_location() -> None:
    errors = [{"loc": ("query", "limit"), "msg": "too big"}, {"loc": ("body",), "msg": "bad"}]
    assert validation_details(errors) == [
        {"field": "limit", "in": "query", "message": "too big"},
        {"field": "body", "in": "body", "message": "bad"},
    ]


def test_ttl_cache_forgets_after_its_ttl_and_zero_remembers_nothing() -> None:
    cache: TtlCache[str] = TtlCache(0.05)
    cache.put("k", "v")
    assert cache.get("k") == "v"
    time.sleep(0.06)
    assert cache.get("k") is None
    off: TtlCache[str] = TtlCache(0)
    off.put("k", "v")
    assert off.get("k") is None
    small: TtlCache[int] = TtlCache(10, max_entries=2)
    for i in range(3):
        small.put(str(i), i)
    assert small.get("2") == 2
