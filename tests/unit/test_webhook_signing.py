"""Standard Webhooks signing, secret rotation and the receivers' ``verify_webhook``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from genq.webhooks.signing import (
    active_secrets,
    generate_secret,
    is_valid_secret,
    rotate,
    sign_headers,
)
from producers import verify_webhook
from producers.webhooks import InvalidSignature
from schemas import InvalidRequest

OLD = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NEW = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
BODY = json.dumps({"type": "job.succeeded", "timestamp": "t", "data": {"id": "j", "status": "ok"}})


def signed(
    secrets: list[str], at: datetime | None = None, event_id: str = "msg_1"
) -> dict[str, str]:
    return sign_headers(event_id, BODY, secrets, at or datetime.now(UTC))


def test_generated_secrets_are_valid_and_distinct() -> None:
    a, b = generate_secret(), generate_secret()
    assert a != b and a.startswith("whsec_")
    assert is_valid_secret(a) and is_valid_secret(b)


@pytest.mark.parametrize(
    ("secret", "valid"),
    [
        (OLD, True),
        (NEW, True),
        ("whsec_", False),
        ("whsec_c2hvcnQ=", False),  # 5 bytes
        ("whsec_not base64!", False),
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", False),  # no prefix
    ],
)
def test_is_valid_secret(secret: str, valid: bool) -> None:
    assert is_valid_secret(secret) is valid


def test_headers_verify_with_the_standardwebhooks_library() -> None:
    headers = signed([OLD], event_id="msg_abc")
    assert headers["webhook-id"] == "msg_abc"
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(OLD).verify(BODY, headers)["data"]["id"] == "j"
    with pytest.raises(WebhookVerificationError):
        Webhook(NEW).verify(BODY, headers)


def test_every_secret_in_its_window_signs() -> None:
    headers = signed([NEW, OLD])
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(NEW).verify(BODY, headers)
    assert Webhook(OLD).verify(BODY, headers)


def test_rotation_keeps_the_old_secret_for_the_overlap_only() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    entries = rotate([{"secret": OLD, "expires_at": None}], NEW, now, overlap_seconds=3600)
    assert [e["secret"] for e in entries] == [NEW, OLD]
    assert active_secrets(entries, now) == [NEW, OLD]
    assert active_secrets(entries, now + timedelta(seconds=3599)) == [NEW, OLD]
    assert active_secrets(entries, now + timedelta(seconds=3600)) == [NEW]


def test_rotation_with_no_overlap_drops_the_old_secret_at_once() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    entries = rotate([{"secret": OLD, "expires_at": None}], NEW, now, overlap_seconds=0)
    assert entries == [{"secret": NEW, "expires_at": None}]


def test_a_second_rotation_never_extends_an_older_window() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    first = rotate([{"secret": OLD, "expires_at": None}], NEW, now, overlap_seconds=60)
    third = generate_secret()
    second = rotate(first, third, now + timedelta(seconds=30), overlap_seconds=3600)
    assert [e["secret"] for e in second] == [third, NEW, OLD]
    assert active_secrets(second, now + timedelta(seconds=61)) == [third, NEW]


def test_verify_webhook_returns_the_payload() -> None:
    payload = verify_webhook(signed([OLD]), BODY.encode(), OLD)
    assert payload["type"] == "job.succeeded"


def test_verify_webhook_accepts_any_case_and_several_secrets() -> None:
    headers = {k.title(): v for k, v in signed([NEW]).items()}
    assert verify_webhook(headers, BODY, [OLD, NEW])["data"]["status"] == "ok"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: (h, b.replace(b'"ok"', b'"ko"')),  # tampered body
        lambda h, b: ({**h, "webhook-id": "msg_other"}, b),  # another id
        lambda h, b: ({**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}, b),
        lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b),
        lambda h, b: ({**h, "webhook-signature": "v1"}, b),  # malformed
        lambda h, b: ({**h, "webhook-signature": "v1,!!!"}, b),
    ],
)
def test_verify_webhook_refuses_tampering(tamper: object) -> None:
    headers, body = tamper(signed([OLD]), BODY.encode())  # type: ignore[operator]
    with pytest.raises(InvalidSignature) as info:
        verify_webhook(headers, body, OLD)
    assert info.value.code.value == "unauthorized"


def test_verify_webhook_refuses_another_secret_and_stale_messages() -> None:
    with pytest.raises(InvalidSignature):
        verify_webhook(signed([OLD]), BODY, NEW)
    stale = signed([OLD], at=datetime.now(UTC) - timedelta(minutes=10))
    with pytest.raises(InvalidSignature):
        verify_webhook(stale, BODY, OLD)


def test_verify_webhook_needs_a_secret() -> None:
    with pytest.raises(InvalidRequest):
        verify_webhook(signed([OLD]), BODY, [])
    with pytest.raises(InvalidRequest):
        verify_webhook(signed([OLD]), BODY, "whsec_")
