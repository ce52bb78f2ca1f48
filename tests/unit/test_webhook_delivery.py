"""One delivery attempt against a real SQLite store and a real receiver on 127.0.0.1, with no
Celery in between: claims, the attempt log, the schedule, 410, SSRF at send time."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from genq.settings import Settings
from genq.store import JobStore, NewJob, build_engine, utcnow
from genq.store import webhook_endpoints as endpoints
from genq.store.migrate import upgrade_database
from genq.store.tables import webhook_deliveries
from genq.store.webhook_log import DeliveryView, list_attempts, list_deliveries
from schemas import JobRequest, JobStatus
from tests.fakes.webhook_receiver import Reply, WebhookReceiver
from workers.webhooks.delivery import deliver, render_body

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DEFAULT = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    url = f"sqlite:///{tmp_path / 'genq.db'}"
    upgrade_database(url)
    store = JobStore(build_engine(url))
    yield store
    store.engine.dispose()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "webhook_allow": ["127.0.0.1/32"],
        "webhook_retry_schedule_seconds": [0, 1, 1, 2],
        "webhook_timeout_seconds": 1.0,
        "webhook_secret": DEFAULT,
        **overrides,
    }
    return Settings(**values)


def finish_job(store: JobStore, target: JobStatus = JobStatus.SUCCEEDED, **request: Any) -> str:
    job_id = str(uuid.uuid4())
    store.create(
        NewJob(job_id, "acme", "interactive", "fake-model", JobRequest(**{**CHAT, **request}))
    )
    assert store.start(job_id, "w1", 30) is not None
    values = {"result": {"text": "done", "finish_reason": "stop"}}
    assert store.transition(job_id, target, worker="w1", values=values) is not None
    return job_id


def only_delivery(store: JobStore, job_id: str) -> DeliveryView:
    [delivery] = list_deliveries(store.engine, job_id=job_id)
    return delivery


def make_due(store: JobStore, delivery_id: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id == delivery_id)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )


def test_success_is_signed_logged_and_final(store: JobStore, receiver: WebhookReceiver) -> None:
    job_id = finish_job(store, webhook_url=receiver.url(), webhook_secret=SECRET)
    delivery = only_delivery(store, job_id)
    assert deliver(store.engine, settings(), delivery.id) == "delivered"
    [hit] = receiver.hits()
    payload = hit.verify(SECRET)
    assert payload["type"] == "job.succeeded" and payload["data"]["id"] == job_id
    assert payload["data"]["result"]["text"] == "done"
    assert hit.webhook_id == delivery.event_id
    assert hit.headers["content-type"] == "application/json"
    done = only_delivery(store, job_id)
    assert (done.status, done.attempts, done.last_status_code) == ("succeeded", 1, 200)
    [attempt] = list_attempts(store.engine, delivery.id)
    assert attempt.status_code == 200 and attempt.response_excerpt == "ok"
    assert attempt.latency_ms is not None and attempt.latency_ms > 0
    # A duplicate task message finds nothing to do.
    assert deliver(store.engine, settings(), delivery.id) == "skipped"
    assert len(receiver.hits()) == 1


def test_the_deployment_secret_signs_jobs_without_their_own(
    store: JobStore, receiver: WebhookReceiver
) -> None:
    job_id = finish_job(store, JobStatus.FAILED, webhook_url=receiver.url())
    deliver(store.engine, settings(), only_delivery(store, job_id).id)
    assert receiver.hits()[0].verify(DEFAULT)["type"] == "job.failed"


def test_failures_follow_the_schedule_then_exhaust(
    store: JobStore, receiver: WebhookReceiver
) -> None:
    receiver.default = Reply(500, body=b"x" * 2000)
    job_id = finish_job(store, webhook_url=receiver.url())
    delivery_id = only_delivery(store, job_id).id
    before = utcnow()
    assert deliver(store.engine, settings(), delivery_id) == "retrying"
    retrying = only_delivery(store, job_id)
    assert retrying.status == "pending" and retrying.next_attempt_at is not None
    assert (
        before + timedelta(seconds=0.9)
        < retrying.next_attempt_at
        < utcnow() + timedelta(seconds=1.1)
    )
    assert deliver(store.engine, settings(), delivery_id) == "skipped"  # not due yet
    for expected in ("retrying", "retrying", "exhausted"):
        make_due(store, delivery_id)
        assert deliver(store.engine, settings(), delivery_id) == expected
    done = only_delivery(store, job_id)
    assert (done.status, done.attempts, done.next_attempt_at) == ("exhausted", 4, None)
    attempts = list_attempts(store.engine, delivery_id)
    assert [a.status_code for a in attempts] == [500] * 4
    assert all(len(a.response_excerpt or "") == 512 for a in attempts)
    assert len({h.webhook_id for h in receiver.hits()}) == 1


def test_410_disables_the_endpoint_and_its_other_deliveries(
    store: JobStore, receiver: WebhookReceiver
) -> None:
    endpoint = endpoints.add_endpoint(
        store.engine,
        tenant="acme",
        url=receiver.url(),
        secret=SECRET,
        events=[],
        thin=False,
        now=utcnow(),
    )
    first, second = finish_job(store), finish_job(store)
    receiver.default = Reply(410)
    assert deliver(store.engine, settings(), only_delivery(store, first).id) == "disabled"
    stored = endpoints.get_endpoint(store.engine, endpoint.id)
    assert stored is not None and stored.disabled_at is not None
    assert "410" in (stored.disabled_reason or "")
    assert only_delivery(store, first).status == "disabled"
    assert only_delivery(store, second).status == "disabled"
    assert deliver(store.engine, settings(), only_delivery(store, second).id) == "skipped"
    assert len(receiver.hits()) == 1
    assert list_deliveries(store.engine, job_id=finish_job(store)) == []  # no new targets


def test_thin_endpoints_get_ids_only(store: JobStore, receiver: WebhookReceiver) -> None:
    endpoints.add_endpoint(
        store.engine,
        tenant="acme",
        url=receiver.url(),
        secret=SECRET,
        events=["job.cancelled"],
        thin=True,
        now=utcnow(),
    )
    assert list_deliveries(store.engine, job_id=finish_job(store)) == []  # filtered out
    job_id = finish_job(store, JobStatus.CANCELLED)
    deliver(store.engine, settings(), only_delivery(store, job_id).id)
    payload = receiver.hits()[0].verify(SECRET)
    assert payload["data"] == {"id": job_id, "status": "cancelled"}
    assert render_body({"type": "t", "data": {"id": "a", "status": "s", "x": 1}}, thin=True) == (
        '{"type":"t","data":{"id":"a","status":"s"}}'
    )


def test_concurrent_tasks_for_one_delivery_send_once(
    store: JobStore, receiver: WebhookReceiver
) -> None:
    receiver.default = Reply(200, delay_seconds=0.2)
    job_id = finish_job(store, webhook_url=receiver.url())
    delivery_id = only_delivery(store, job_id).id
    outcomes: list[str] = []
    threads = [
        threading.Thread(
            target=lambda: outcomes.append(deliver(store.engine, settings(), delivery_id))
        )
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["delivered"] + ["skipped"] * 7
    assert len(receiver.hits()) == 1


def test_a_slow_receiver_is_a_failed_attempt(store: JobStore, receiver: WebhookReceiver) -> None:
    receiver.replies.append(Reply(200, delay_seconds=2.0))
    job_id = finish_job(store, webhook_url=receiver.url())
    assert deliver(store.engine, settings(), only_delivery(store, job_id).id) == "retrying"
    [attempt] = list_attempts(store.engine, only_delivery(store, job_id).id)
    assert attempt.status_code is None and "no response within 1 s" in (attempt.error or "")
    assert attempt.latency_ms is not None and 900 < attempt.latency_ms < 1900


def test_no_secret_anywhere_is_a_visible_failure(
    store: JobStore, receiver: WebhookReceiver
) -> None:
    job_id = finish_job(store, webhook_url=receiver.url())
    assert deliver(
        store.engine, settings(webhook_secret=None), only_delivery(store, job_id).id
    ) == ("retrying")
    assert "no signing secret" in (only_delivery(store, job_id).last_error or "")
    assert receiver.hits() == []


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/hook", "http://[::1]:9/"],
)
def test_refused_addresses_are_logged_and_never_contacted(
    store: JobStore, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = finish_job(store, webhook_url=url)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"connected to {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    # Not even allowlisted loopback helps these.
    assert deliver(store.engine, settings(), only_delivery(store, job_id).id) == "retrying"
    error = only_delivery(store, job_id).last_error or ""
    assert error.startswith("not sent: webhook host") and "GENQ_WEBHOOK_ALLOW" in error


def test_loopback_is_refused_at_send_time_unless_allowlisted(
    store: JobStore, receiver: WebhookReceiver
) -> None:
    job_id = finish_job(store, webhook_url=receiver.url())
    delivery_id = only_delivery(store, job_id).id
    assert deliver(store.engine, settings(webhook_allow=[]), delivery_id) == "retrying"
    assert "loopback" in (only_delivery(store, job_id).last_error or "")
    assert receiver.hits() == []
    make_due(store, delivery_id)
    assert deliver(store.engine, settings(), delivery_id) == "delivered"
