"""Webhooks end to end: real Redis, a real LLM worker, a real ops worker (``genq.webhooks`` +
the sweep), beat, and a real receiver on 127.0.0.1 (allowlisted) that verifies every delivery
with the ``standardwebhooks`` library."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from genq.store.webhook_endpoints import get_endpoint
from genq.store.webhook_log import DeliveryView, list_attempts, list_deliveries
from producers import GenqClient, verify_webhook
from producers.webhook_admin import add_endpoint
from producers.webhooks import InvalidSignature
from tests.fakes.runtime_server import FakeRuntime, Fault
from tests.fakes.webhook_receiver import Reply, WebhookReceiver
from tests.integration.conftest import Stack
from tests.support import eventually
from workers.main import BEAT_HEARTBEAT_FILE

pytestmark = pytest.mark.integration

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DEFAULT_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
CHAT = {"messages": [{"role": "user", "content": "say hello"}]}
WEBHOOK_ENV = {
    "GENQ_WEBHOOK_ALLOW": "127.0.0.1/32",
    "GENQ_WEBHOOK_RETRY_SCHEDULE_SECONDS": "0,1,1,2",
    "GENQ_WEBHOOK_TIMEOUT_SECONDS": "1",
    "GENQ_WEBHOOK_SECRET": DEFAULT_SECRET,
}
# Enough one-second retries to outlast a receiver that is down for a few seconds.
PATIENT_SCHEDULE = ",".join(["0"] + ["1"] * 30)


@pytest.fixture
def hooks(stack: Stack) -> Stack:
    stack.env.update(WEBHOOK_ENV)
    return stack


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


def start_all(stack: Stack, *lanes: str) -> None:
    stack.worker(*(("--lanes", ",".join(lanes)) if lanes else ()))
    stack.ops_worker()
    stack.beat()


def deliveries(client: GenqClient, job_id: str) -> list[DeliveryView]:
    return list_deliveries(client.store.engine, job_id=job_id)


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    assert eventually(check, timeout=timeout), f"timed out after {timeout} s waiting for {what}"


def failed_attempts(client: GenqClient, job_id: str) -> int:
    return sum(len(list_attempts(client.store.engine, d.id)) for d in deliveries(client, job_id))


def wait_for_sweeps(stack: Stack, count: int, timeout: float = 20) -> None:
    """Until beat has run ``count`` more sweeps (it touches its heartbeat file after each)."""
    heartbeat = stack.settings.data_dir / BEAT_HEARTBEAT_FILE
    assert eventually(heartbeat.exists, timeout=timeout), "beat never swept"
    seen = [heartbeat.stat().st_mtime_ns]

    def swept() -> bool:
        if (touched := heartbeat.stat().st_mtime_ns) != seen[-1]:
            seen.append(touched)
        return len(seen) > count

    wait_until(swept, timeout, f"{count} sweeps")


def delivered(client: GenqClient, job_id: str, timeout: float = 20) -> DeliveryView:
    def done() -> bool:
        found = deliveries(client, job_id)
        return bool(found) and found[0].status != "pending"

    wait_until(done, timeout, f"job {job_id}'s delivery to settle")
    [delivery] = deliveries(client, job_id)
    return delivery


def test_every_terminal_state_emits_exactly_one_event(
    hooks: Stack, receiver: WebhookReceiver, fake_runtime: FakeRuntime
) -> None:
    # A batch job released into the broker holds a runtime slot while its message waits there,
    # and nothing consumes "batch" here: two such slots, and one left for the interactive lane.
    hooks.env["GENQ_RUNTIME_SLOTS"] = "3"
    client = hooks.client()
    add_endpoint(client.store, hooks.settings, tenant="default", url=receiver.url(), secret=SECRET)
    fake_runtime.fail_next.extend([Fault.status(503, path="/v1/embeddings")] * 10)
    start_all(hooks, "interactive")  # nothing consumes "batch": its jobs stay queued
    jobs = {
        "succeeded": client.submit(CHAT).id,
        "failed": client.submit({**CHAT, "model": "no-such-model"}).id,
        "dead_lettered": client.submit({"kind": "embedding", "input": "x"}).id,
        "cancelled": client.submit({**CHAT, "lane": "batch"}).id,
        "expired": client.submit({**CHAT, "lane": "batch", "expires_in": 1}).id,
    }
    client.cancel(jobs["cancelled"])
    for status, job_id in jobs.items():
        assert client.wait(job_id, timeout=40).status.value == status
    receiver.wait_for(5, timeout=20)
    wait_for_sweeps(hooks, 2)  # none of them may send anything twice
    hits = receiver.hits()
    assert len(hits) == 5
    by_job = {payload["data"]["id"]: payload for payload in (h.verify(SECRET) for h in hits)}
    assert set(by_job) == set(jobs.values())
    for status, job_id in jobs.items():
        assert by_job[job_id]["type"] == f"job.{status}"
        assert by_job[job_id]["data"]["status"] == status
        [delivery] = deliveries(client, job_id)
        assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    assert len({h.webhook_id for h in hits}) == 5
    assert by_job[jobs["succeeded"]]["data"]["result"]["text"] == "Hello, world!"
    # A tampered body fails verification, with the library and with genq's helper.
    hit = hits[0]
    tampered = hit.body.replace(b'"status":"', b'"status":"x')
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, hit.headers)
    with pytest.raises(InvalidSignature):
        verify_webhook(hit.headers, tampered, SECRET)
    assert verify_webhook(hit.headers, hit.body, SECRET)["type"].startswith("job.")


def test_per_job_webhooks_sign_with_the_jobs_secret_or_the_default(
    hooks: Stack, receiver: WebhookReceiver
) -> None:
    hooks.worker()
    hooks.ops_worker()
    client = hooks.client()
    own = client.submit({**CHAT, "webhook_url": receiver.url("/own"), "webhook_secret": SECRET})
    plain = client.submit({**CHAT, "webhook_url": receiver.url("/default")})
    [own_hit] = receiver.wait_for(1, path="/own")
    [plain_hit] = receiver.wait_for(1, path="/default")
    assert own_hit.verify(SECRET)["data"]["id"] == own.id
    assert plain_hit.verify(DEFAULT_SECRET)["data"]["id"] == plain.id
    with pytest.raises(WebhookVerificationError):
        own_hit.verify(DEFAULT_SECRET)
    assert "webhook_secret" not in own_hit.verify(SECRET)["data"]["request"]


def test_receiver_down_then_up_is_delivered_with_the_same_webhook_id(hooks: Stack) -> None:
    hooks.env["GENQ_WEBHOOK_RETRY_SCHEDULE_SECONDS"] = PATIENT_SCHEDULE
    receiver = WebhookReceiver()  # its port refuses connections until start()
    start_all(hooks)
    client = hooks.client()
    job_id = client.submit({**CHAT, "webhook_url": receiver.url()}).id
    # Two attempts logged as failed (an attempt is counted when it starts, logged when done).
    wait_until(lambda: failed_attempts(client, job_id) >= 2, 20, "2 failed attempts")
    with receiver:
        [hit] = receiver.wait_for(1, timeout=15)
        delivery = delivered(client, job_id)
    assert delivery.status == "succeeded" and delivery.attempts >= 3
    assert hit.webhook_id == delivery.event_id
    assert hit.verify(DEFAULT_SECRET)["data"]["id"] == job_id
    attempts = list_attempts(client.store.engine, delivery.id)
    assert [a.status_code for a in attempts] == [None] * (len(attempts) - 1) + [200]
    assert all("ConnectError" in (a.error or "") for a in attempts[:-1])


def test_500_then_200(hooks: Stack, receiver: WebhookReceiver) -> None:
    receiver.replies.append(Reply(500, body=b"receiver broke"))
    start_all(hooks)
    client = hooks.client()
    job_id = client.submit({**CHAT, "webhook_url": receiver.url()}).id
    first, second = receiver.wait_for(2)
    assert first.webhook_id == second.webhook_id
    assert second.at - first.at >= 0.9  # the schedule's second step, from the store
    second.verify(DEFAULT_SECRET)
    delivery = delivered(client, job_id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 2, 200)
    attempts = list_attempts(client.store.engine, delivery.id)
    assert [(a.status_code, a.error) for a in attempts] == [(500, "HTTP 500"), (200, None)]
    assert attempts[0].response_excerpt == "receiver broke"


def test_429_retry_after_is_honoured(hooks: Stack, receiver: WebhookReceiver) -> None:
    receiver.replies.append(Reply(429, headers={"Retry-After": "2"}))
    start_all(hooks)
    client = hooks.client()
    job_id = client.submit({**CHAT, "webhook_url": receiver.url()}).id
    first, second = receiver.wait_for(2)
    assert second.at - first.at >= 1.9  # Retry-After: 2 over the schedule's 1 s
    assert delivered(client, job_id).status == "succeeded"


def test_410_disables_the_endpoint(hooks: Stack, receiver: WebhookReceiver) -> None:
    receiver.default = Reply(410)
    client = hooks.client()
    created = add_endpoint(client.store, hooks.settings, tenant="default", url=receiver.url())
    start_all(hooks)
    first = client.submit(CHAT).id
    assert delivered(client, first).status == "disabled"
    endpoint = get_endpoint(client.store.engine, created.endpoint.id)
    assert endpoint is not None and endpoint.disabled_at is not None
    second = client.submit(CHAT).id
    client.wait(second, timeout=20)
    wait_for_sweeps(hooks, 2)  # they would dispatch a delivery made for it
    assert deliveries(client, second) == []
    assert len(receiver.hits()) == 1


def test_slow_receiver_times_out_as_a_failed_attempt(
    hooks: Stack, receiver: WebhookReceiver
) -> None:
    receiver.replies.append(Reply(200, delay_seconds=2.5))
    start_all(hooks)
    client = hooks.client()
    job_id = client.submit({**CHAT, "webhook_url": receiver.url()}).id
    delivery = delivered(client, job_id)
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    slow, fast = list_attempts(client.store.engine, delivery.id)
    assert slow.status_code is None and slow.error == "no response within 1 s"
    assert fast.status_code == 200
    assert len({h.webhook_id for h in receiver.hits()}) == 1


def test_redirects_are_failures_and_never_followed(hooks: Stack, receiver: WebhookReceiver) -> None:
    receiver.default = Reply(302, headers={"Location": receiver.url("/moved")})
    start_all(hooks)
    client = hooks.client()
    job_id = client.submit({**CHAT, "webhook_url": receiver.url()}).id
    delivery = delivered(client, job_id, timeout=30)
    assert (delivery.status, delivery.attempts) == ("exhausted", 4)  # schedule 0,1,1,2
    assert receiver.hits("/moved") == []
    assert len(receiver.hits("/hook")) == 4
    attempts = list_attempts(client.store.engine, delivery.id)
    assert {a.status_code for a in attempts} == {302}
    assert "redirects are not followed" in (attempts[0].error or "")
    exhausted = list_deliveries(client.store.engine, status="exhausted")
    assert [d.id for d in exhausted] == [delivery.id]


def test_worker_restart_between_attempts(hooks: Stack) -> None:
    hooks.env["GENQ_WEBHOOK_RETRY_SCHEDULE_SECONDS"] = PATIENT_SCHEDULE
    receiver = WebhookReceiver()
    hooks.worker()
    ops = hooks.ops_worker()
    hooks.beat()
    client = hooks.client()
    job_id = client.submit({**CHAT, "webhook_url": receiver.url()}).id
    # Between attempts: the first one failed and was logged, the next is only in the store.
    wait_until(lambda: any(d.last_error for d in deliveries(client, job_id)), 20, "1 attempt")
    ops.kill()  # SIGKILL: no warm shutdown, nothing handed back
    with receiver:
        wait_for_sweeps(hooks, 2)  # beat re-dispatches what is due: nobody is left to send it
        assert receiver.hits() == []
        attempts_while_down = deliveries(client, job_id)[0].attempts
        hooks.ops_worker()
        [hit] = receiver.wait_for(1, timeout=20)
        delivery = delivered(client, job_id)
    assert delivery.status == "succeeded" and delivery.attempts == attempts_while_down + 1
    assert hit.webhook_id == delivery.event_id
    hit.verify(DEFAULT_SECRET)
