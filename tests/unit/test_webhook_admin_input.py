"""Operator input the webhook admin functions accept or refuse (pure parts)."""

from __future__ import annotations

import pytest

from producers.webhook_admin import EVENT_TYPES, NewSecret, parse_events
from schemas import InvalidRequest


@pytest.mark.parametrize(
    ("given", "events"),
    [
        (None, []),
        ("", []),
        ("job.succeeded", ["job.succeeded"]),
        ("job.failed, job.succeeded,job.failed", ["job.failed", "job.succeeded"]),
        (["job.expired"], ["job.expired"]),
        (",".join(EVENT_TYPES), []),  # all of them is the same as no filter
    ],
)
def test_parse_events(given: str | list[str] | None, events: list[str]) -> None:
    assert parse_events(given) == events


@pytest.mark.parametrize("given", ["job.done", "succeeded", ["job.succeeded", "job.*"]])
def test_unknown_events_are_refused(given: str | list[str]) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_events(given)
    assert info.value.details[0]["field"] == "events"


def test_new_secrets_do_not_show_in_reprs() -> None:
    from datetime import UTC, datetime

    from genq.store.webhook_endpoints import Endpoint

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    endpoint = Endpoint(
        id="e1",
        tenant="t",
        url="https://x.example/",
        events=[],
        thin=False,
        created_at=datetime.now(UTC),
        secrets=[{"secret": secret, "expires_at": None}],
    )
    assert secret not in repr(endpoint)
    assert secret not in repr(NewSecret(endpoint, secret))
    assert secret not in str(endpoint.public())
