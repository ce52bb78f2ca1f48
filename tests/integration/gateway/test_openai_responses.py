"""Background responses (``/v1/responses``), driven by the official ``openai`` SDK with only
``base_url`` changed: real gateway, real worker processes, real Redis, the fake runtime."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI

from tests.fakes.runtime_server import FakeRuntime, Fault
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.integration.conftest import Stack
from tests.integration.gateway.conftest import (
    ADMIN_KEY,
    Gateway,
    GatewayStarter,
    run_openai_example,
)
from tests.support import eventually

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "examples" / "openai_responses.py"
TEXT = "Hello, world!"  # the fake runtime's default tokens
SLOW = [f"t{i} " for i in range(400)]
RESPONSE_EVENTS = [
    "response.completed",
    "response.incomplete",
    "response.failed",
    "response.cancelled",
]
OTHER_SECRET = "whsec_" + "A" * 43 + "="


def sdk(gateway: Gateway, key: str, **options: Any) -> OpenAI:
    options.setdefault("max_retries", 0)
    return OpenAI(base_url=f"{gateway.url}/v1", api_key=key, **options)


def job_id(response_id: str) -> str:
    digits = response_id.removeprefix("resp_")
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def jobs_of(gateway: Gateway, key: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = gateway.client(key).get("/v1/jobs").json()["data"]
    return data


def status_becomes(client: OpenAI, response_id: str, status: str, timeout: float = 15) -> bool:
    return eventually(lambda: client.responses.retrieve(response_id).status == status, timeout)


@pytest.fixture
def served(stack: Stack, gateway: Gateway) -> Iterator[tuple[Gateway, str]]:
    """A gateway with one worker behind it, and an API key of tenant ``acme``."""
    stack.worker()
    yield gateway, gateway.key("acme")


def test_a_background_response_is_a_job_run_by_a_worker(
    served: tuple[Gateway, str], fake_runtime: FakeRuntime
) -> None:
    gateway, key = served
    client = sdk(gateway, key)
    created = client.responses.create(
        model="fake-model",
        input="Say hello.",
        instructions="Be brief.",
        background=True,
        max_output_tokens=16,
        temperature=0.5,
        metadata={"team": "search"},
        user="u-1",
    )
    assert (created.object, created.status, created.background) == ("response", "queued", True)
    assert created.id.startswith("resp_") and created.output == []
    assert status_becomes(client, created.id, "completed")
    done = client.responses.retrieve(created.id)
    assert done.output_text == TEXT
    assert done.output[0].type == "message" and done.output[0].role == "assistant"
    assert done.usage is not None and done.usage.output_tokens == 4
    assert done.usage.total_tokens == done.usage.input_tokens + 4
    assert (done.instructions, done.metadata, done.max_output_tokens) == (
        "Be brief.",
        {"team": "search"},
        16,
    )
    assert done.error is None and done.incomplete_details is None
    job = gateway.client(key).get(f"/v1/jobs/{job_id(done.id)}").json()
    assert (job["status"], job["lane"], job["priority"], job["tenant"]) == (
        "succeeded",
        "interactive",
        7,
        "acme",
    )
    assert job["worker_id"]
    assert [m["role"] for m in job["request"]["messages"]] == ["system", "user"]
    items = list(client.responses.input_items.list(done.id, limit=1))  # pages of one
    assert [(i.type, i.role, i.content[0].text) for i in items] == [  # type: ignore[union-attr]
        ("message", "user", "Say hello.")
    ]
    assert fake_runtime.stats()["requests_by_path"]["/v1/chat/completions"] == 1


def test_the_documented_example_runs(served: tuple[Gateway, str]) -> None:
    gateway, key = served
    stdout = run_openai_example(gateway, key, EXAMPLE)
    assert stdout == f"queued\n{TEXT}\ncompleted, 4 tokens\n"


def test_without_background_the_answer_comes_on_the_request(
    served: tuple[Gateway, str],
) -> None:
    gateway, key = served
    client = sdk(gateway, key)
    conversation: Any = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "input_text", "text": "Say hello."}]},
    ]
    done = client.responses.create(
        model="fake-model", input=conversation, extra_headers={"X-Genq-Priority": "9"}
    )
    assert (done.status, done.output_text, done.background) == ("completed", TEXT, False)
    items = client.responses.input_items.list(done.id, order="asc", limit=1)
    assert [i.role for i in items] == ["system", "user"]  # type: ignore[union-attr]
    assert [j["priority"] for j in jobs_of(gateway, key)] == [9]


def test_a_response_continues_a_previous_one(served: tuple[Gateway, str]) -> None:
    gateway, key = served
    client = sdk(gateway, key)
    first = client.responses.create(model="fake-model", input="Say hello.", instructions="A")
    second = client.responses.create(
        model="fake-model", input="Again.", instructions="B", previous_response_id=first.id
    )
    assert (second.status, second.previous_response_id, second.instructions) == (
        "completed",
        first.id,
        "B",
    )
    job = gateway.client(key).get(f"/v1/jobs/{job_id(second.id)}").json()
    assert job["request"]["messages"] == [
        {"role": "system", "content": "B"},  # the first one's instructions stay behind
        {"role": "user", "content": "Say hello."},
        {"role": "assistant", "content": TEXT},
        {"role": "user", "content": "Again."},
    ]
    assert [i.content[0].text for i in client.responses.input_items.list(second.id)] == [  # type: ignore[union-attr]
        "Again."
    ]
    # Only a finished response of the caller's own can be continued.
    queued = sdk(gateway, gateway.key("other")).responses.create(
        model="fake-model", input="Hi", background=True, metadata={"x": "y"}
    )
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="fake-model", input="Hi", previous_response_id=queued.id)
    assert len(jobs_of(gateway, key)) == 2


def test_only_a_finished_response_can_be_continued(gateway: Gateway) -> None:
    key = gateway.key("acme")  # no worker: the first response stays queued
    client = sdk(gateway, key)
    queued = client.responses.create(model="fake-model", input="Hi", background=True)
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="fake-model", input="Hi", previous_response_id=queued.id)
    assert raised.value.param == "previous_response_id"
    assert len(jobs_of(gateway, key)) == 1


def test_a_streamed_background_response(served: tuple[Gateway, str]) -> None:
    gateway, key = served
    client = sdk(gateway, key)
    events = list(
        client.responses.create(
            model="fake-model", input="Say hello.", background=True, stream=True
        )
    )
    assert [e.sequence_number for e in events] == list(range(len(events)))
    types = [e.type for e in events]
    assert types[:6] == [
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == TEXT
    assert events[-1].response.output_text == TEXT  # type: ignore[union-attr]
    assert events[0].response.status == "queued"  # type: ignore[union-attr]
    # The SDK's stream helper accumulates the same events into the final response.
    with client.responses.stream(model="fake-model", input="Say hello.", background=True) as s:
        final = s.get_final_response()
    assert (final.status, final.output_text) == ("completed", TEXT)


def test_a_stream_resumes_after_a_disconnect_without_gap_or_repeat(
    served: tuple[Gateway, str], fake_runtime: FakeRuntime
) -> None:
    gateway, key = served
    fake_runtime.configure(tokens=[f"t{i} " for i in range(40)], token_delay_seconds=0.02)
    client = sdk(gateway, key)
    first: list[Any] = []
    stream = client.responses.create(
        model="fake-model", input="Count.", background=True, stream=True
    )
    for event in stream:
        first.append(event)
        if sum(e.type == "response.output_text.delta" for e in first) == 3:
            break
    stream.close()  # a disconnect: the background response goes on
    last = first[-1].sequence_number
    rest = list(client.responses.retrieve(first[0].response.id, stream=True, starting_after=last))
    numbers = [e.sequence_number for e in first + rest]
    assert numbers == list(range(len(numbers)))
    text = "".join(e.delta for e in first + rest if e.type == "response.output_text.delta")
    assert text == "".join(f"t{i} " for i in range(40))
    assert rest[-1].type == "response.completed" and rest[-1].response.output_text == text
    # A plain SSE client resumes with Last-Event-ID (each event's id is its number).
    with gateway.client(key).stream(
        "GET",
        f"/v1/responses/{first[0].response.id}",
        params={"stream": "true"},
        headers={"Last-Event-ID": str(last)},
    ) as raw:
        ids = [int(line[3:]) for line in raw.iter_lines() if line.startswith("id:")]
    assert ids == numbers[last + 1 :]
    # Read again from the start, later: the same events under the same numbers.
    again = list(client.responses.retrieve(first[0].response.id, stream=True))
    assert [(e.sequence_number, e.type) for e in again] == [
        (e.sequence_number, e.type) for e in first + rest
    ]


def test_in_progress_is_sent_when_the_job_starts_not_at_its_first_token(
    served: tuple[Gateway, str], fake_runtime: FakeRuntime
) -> None:
    gateway, key = served
    fake_runtime.configure(job_delay_seconds=5.0)  # a long prefill: running, no token yet
    client = sdk(gateway, key)
    stream = client.responses.create(model="fake-model", input="Hi", background=True, stream=True)
    seen: list[Any] = []
    for event in stream:
        seen.append(event)
        if event.type == "response.in_progress":
            break
    tokens_then = fake_runtime.stats()["tokens_sent"]
    status_then = client.responses.retrieve(seen[0].response.id).status
    stream.close()
    assert [e.type for e in seen] == [
        "response.created",
        "response.queued",
        "response.in_progress",
    ]
    assert (tokens_then, status_then) == (0, "in_progress")
    assert seen[2].response.status == "in_progress" and seen[2].response.output == []
    # The numbering is the stream's, whenever it is read: the same events again, in order.
    assert status_becomes(client, seen[0].response.id, "completed", timeout=30)
    again = list(client.responses.retrieve(seen[0].response.id, stream=True))
    assert [e.type for e in again[:4]] == [
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.output_item.added",
    ]
    assert [e.sequence_number for e in again] == list(range(len(again)))


def test_retrieve_shows_the_text_so_far_while_in_progress(
    served: tuple[Gateway, str], fake_runtime: FakeRuntime
) -> None:
    gateway, key = served
    fake_runtime.configure(tokens=SLOW, token_delay_seconds=0.05)
    client = sdk(gateway, key)
    created = client.responses.create(model="fake-model", input="Go on.", background=True)
    seen = ""
    stream = client.responses.retrieve(created.id, stream=True)
    for event in stream:
        if event.type == "response.output_text.delta":
            seen += event.delta
            if seen.count(" ") >= 3:
                break
    stream.close()
    partial = client.responses.retrieve(created.id)
    assert (partial.status, partial.usage) == ("in_progress", None)
    assert [(o.type, o.status) for o in partial.output] == [("message", "in_progress")]
    assert partial.output_text.startswith(seen) and len(partial.output_text) >= len(seen)
    assert eventually(
        lambda: len(client.responses.retrieve(created.id).output_text) > len(partial.output_text),
        15,
    )
    cancelled = client.responses.cancel(created.id)
    assert cancelled.status == "cancelled" and cancelled.output_text.startswith(partial.output_text)


def test_response_webhooks_are_openais_events_signed_like_genqs(
    stack: Stack, start_gateway: GatewayStarter, fake_runtime: FakeRuntime
) -> None:
    stack.env.update(
        {"GENQ_WEBHOOK_ALLOW": "127.0.0.1/32", "GENQ_WEBHOOK_RETRY_SCHEDULE_SECONDS": "0"}
    )
    gateway = start_gateway()
    with WebhookReceiver() as receiver:
        added = gateway.client(ADMIN_KEY).post(
            "/v1/admin/webhooks/endpoints",
            json={"tenant": "acme", "url": receiver.url(), "events": RESPONSE_EVENTS},
        )
        assert added.status_code == 201, added.text
        secret = added.json()["secret"]
        client = sdk(gateway, gateway.key("acme"))
        never_ran = client.responses.create(model="fake-model", input="Hi", background=True)
        assert client.responses.cancel(never_ran.id).status == "cancelled"  # no worker yet
        stack.worker()
        stack.ops_worker()
        fake_runtime.configure(context_tokens=4)  # a longer prompt is refused: failed
        completed = client.responses.create(model="fake-model", input="Hi")
        incomplete = client.responses.create(model="fake-model", input="Hi", max_output_tokens=2)
        failed = client.responses.create(
            model="fake-model", input="one two three four five", background=True
        )
        assert status_becomes(client, failed.id, "failed")
        hits = receiver.wait_for(4)
        # The official SDK checks the Standard Webhooks signature and reads OpenAI's event.
        unwrapping = OpenAI(api_key="unused", webhook_secret=secret).webhooks
        events = {}
        for hit in hits:
            event = unwrapping.unwrap(hit.body.decode(), hit.headers)
            assert (event.id, event.object) == (hit.webhook_id, "event")
            assert abs(event.created_at - time.time()) < 120
            events[event.type] = event.data.id
        assert events == {
            "response.cancelled": never_ran.id,
            "response.completed": completed.id,
            "response.incomplete": incomplete.id,
            "response.failed": failed.id,
        }
        with pytest.raises(openai.InvalidWebhookSignatureError):
            OpenAI(api_key="unused", webhook_secret=OTHER_SECRET).webhooks.unwrap(
                hits[0].body.decode(), hits[0].headers
            )


def test_keep_alive_pings_between_events_do_not_break_the_sdk(
    stack: Stack, start_gateway: GatewayStarter, fake_runtime: FakeRuntime
) -> None:
    """The SDK keeps the last ``id:`` and turns every later blank line into an event: a
    usual ``: ping`` block between two events reached it as one with empty data (it raised
    JSONDecodeError mid-stream on the embedded model, whose tokens are slower than the
    pings)."""
    gateway = start_gateway(gateway_sse_ping_seconds="0.1")
    stack.worker()
    fake_runtime.configure(tokens=["a ", "b ", "c ", "d "], token_delay_seconds=0.4)
    client = sdk(gateway, gateway.key("acme"))
    events = list(
        client.responses.create(model="fake-model", input="Hi", background=True, stream=True)
    )
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "a b c d "  # type: ignore[union-attr]


def test_max_output_tokens_ends_incomplete(served: tuple[Gateway, str]) -> None:
    gateway, key = served
    client = sdk(gateway, key)
    events = list(
        client.responses.create(
            model="fake-model", input="Hi", background=True, stream=True, max_output_tokens=2
        )
    )
    assert events[-1].type == "response.incomplete"
    response = client.responses.retrieve(events[0].response.id)  # type: ignore[union-attr]
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None and response.usage.output_tokens == 2


def test_a_failed_response(served: tuple[Gateway, str], fake_runtime: FakeRuntime) -> None:
    gateway, key = served
    fake_runtime.configure(context_tokens=3)  # the runtime refuses longer prompts
    long = "one two three four five"
    client = sdk(gateway, key)
    created = client.responses.create(model="fake-model", input=long, background=True)
    assert status_becomes(client, created.id, "failed")
    failed = client.responses.retrieve(created.id)
    assert failed.error is not None and failed.error.code == "invalid_prompt"
    assert "context_length_exceeded" in failed.error.message
    assert failed.output == [] and failed.output_text == ""
    events = list(client.responses.retrieve(created.id, stream=True))
    assert events[-1].type == "response.failed"
    assert events[-1].response.error == failed.error  # type: ignore[union-attr]
    # Without background the failure is the request's, as on the chat route.
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="fake-model", input=long)
    assert raised.value.code == "context_length_exceeded"


def test_a_retry_after_streamed_text_ends_the_stream_with_an_error_event(
    served: tuple[Gateway, str], fake_runtime: FakeRuntime
) -> None:
    gateway, key = served
    fake_runtime.fail_next.append(Fault.drop_after(2))  # the first attempt breaks off
    client = sdk(gateway, key)
    events = list(
        client.responses.create(model="fake-model", input="Hi", background=True, stream=True)
    )
    assert events[-1].type == "error" and "retried" in events[-1].message  # type: ignore[union-attr]
    assert any(e.type == "response.output_text.delta" for e in events)
    response_id = events[0].response.id  # type: ignore[union-attr]
    assert status_becomes(client, response_id, "completed")
    assert client.responses.retrieve(response_id).output_text == TEXT


def test_a_foreground_stream_that_hangs_up_cancels_its_response(
    served: tuple[Gateway, str], fake_runtime: FakeRuntime
) -> None:
    gateway, key = served
    fake_runtime.configure(tokens=SLOW, token_delay_seconds=0.05)
    client = sdk(gateway, key)
    stream = client.responses.create(model="fake-model", input="Go on.", stream=True)
    response_id = ""
    for event in stream:
        if event.type == "response.created":
            response_id = event.response.id
        if event.type == "response.output_text.delta":
            break
    stream.close()
    assert status_becomes(client, response_id, "cancelled")
    assert fake_runtime.wait_until(lambda: fake_runtime.disconnects >= 1)


def test_cancel_a_queued_response(gateway: Gateway) -> None:
    key = gateway.key("acme")  # no worker: the response stays queued
    client = sdk(gateway, key)
    created = client.responses.create(model="fake-model", input="Hi", background=True)
    cancelled = client.responses.cancel(created.id)
    assert (cancelled.id, cancelled.status, cancelled.output) == (created.id, "cancelled", [])
    assert client.responses.retrieve(created.id).status == "cancelled"
    assert [j["status"] for j in jobs_of(gateway, key)] == ["cancelled"]
    events = list(client.responses.retrieve(created.id, stream=True))
    assert [e.type for e in events] == ["response.created", "response.queued", "response.failed"]
    assert events[-1].response.status == "cancelled"  # type: ignore[union-attr]
    # Cancelling again changes nothing.
    assert client.responses.cancel(created.id).status == "cancelled"


def test_cancel_a_running_response(served: tuple[Gateway, str], fake_runtime: FakeRuntime) -> None:
    gateway, key = served
    fake_runtime.configure(tokens=SLOW, token_delay_seconds=0.05)
    client = sdk(gateway, key)
    created = client.responses.create(model="fake-model", input="Go on.", background=True)
    stream = client.responses.retrieve(created.id, stream=True)
    for event in stream:
        if event.type == "response.output_text.delta":
            break
    stream.close()
    assert client.responses.retrieve(created.id).status == "in_progress"
    cancelled = client.responses.cancel(created.id)
    assert cancelled.status == "cancelled"
    assert cancelled.output_text.startswith("t0 ")  # the text so far is kept
    assert fake_runtime.wait_until(lambda: fake_runtime.disconnects >= 1)


def test_delete_a_response(served: tuple[Gateway, str], fake_runtime: FakeRuntime) -> None:
    gateway, key = served
    client = sdk(gateway, key)
    done = client.responses.create(model="fake-model", input="Hi")
    assert client.responses.delete(done.id) is None
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(done.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(done.id)
    assert gateway.client(key).get(f"/v1/jobs/{job_id(done.id)}").status_code == 404
    # One still running is cancelled, then deleted.
    fake_runtime.configure(tokens=SLOW, token_delay_seconds=0.05)
    running = client.responses.create(model="fake-model", input="Go on.", background=True)
    assert status_becomes(client, running.id, "in_progress")
    client.responses.delete(running.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(running.id)
    assert jobs_of(gateway, key) == []


def test_an_idempotency_key_makes_one_response(gateway: Gateway) -> None:
    key = gateway.key("acme")
    client = sdk(gateway, key)
    ids = {
        client.responses.create(
            model="fake-model",
            input="Hi",
            background=True,
            extra_headers={"Idempotency-Key": "one-response"},
        ).id
        for _ in range(2)
    }
    assert len(ids) == 1 and len(jobs_of(gateway, key)) == 1


IMAGE: Any = {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "auto"}
BAD_REQUESTS: list[tuple[dict[str, Any], str]] = [
    ({"tools": [{"type": "function", "name": "f", "parameters": {}, "strict": True}]}, "tools"),
    ({"input": [{"role": "user", "content": [IMAGE]}]}, "input[0].content[0]"),
    ({"text": {"format": {"type": "json_object"}}}, "text.format"),
    ({"conversation": "conv_0123"}, "conversation"),
    ({"temperature": 7}, "temperature"),
]


@pytest.mark.parametrize(("options", "param"), BAD_REQUESTS, ids=[p for _o, p in BAD_REQUESTS])
def test_what_genq_cannot_honour_is_a_400_naming_it(
    gateway: Gateway, options: dict[str, Any], param: str
) -> None:
    key = gateway.key("acme")
    body = {"model": "fake-model", "input": "Hi", "background": True, **options}
    with pytest.raises(openai.BadRequestError) as raised:
        sdk(gateway, key).responses.create(**body)
    assert raised.value.param == param, raised.value.body
    assert raised.value.type == "invalid_request_error"
    assert jobs_of(gateway, key) == []


def test_unknown_ids_and_other_tenants_are_not_found(gateway: Gateway) -> None:
    acme, other = gateway.key("acme"), gateway.key("other")
    mine = sdk(gateway, acme).responses.create(model="fake-model", input="Hi", background=True)
    theirs = sdk(gateway, other)
    for call in (theirs.responses.retrieve, theirs.responses.cancel, theirs.responses.delete):
        with pytest.raises(openai.NotFoundError) as raised:
            call(mine.id)
        assert raised.value.code == "not_found"
    for unknown in ("resp_0123456789abcdef0123456789abcdef", "resp_nope", "chatcmpl-1"):
        with pytest.raises(openai.NotFoundError):
            theirs.responses.retrieve(unknown)
    with pytest.raises(openai.NotFoundError) as raised:
        theirs.responses.create(model="no-such-model", input="Hi", background=True)
    assert raised.value.code == "model_not_found" and raised.value.param == "model"
    # A job submitted through /v1/jobs is no response.
    plain = gateway.client(acme).post(
        "/v1/jobs", json={"messages": [{"role": "user", "content": "x"}]}
    )
    with pytest.raises(openai.NotFoundError):
        sdk(gateway, acme).responses.retrieve("resp_" + plain.json()["id"].replace("-", ""))
    assert sdk(gateway, acme).responses.retrieve(mine.id).status == "queued"
    # An admin key sees every tenant's responses.
    assert sdk(gateway, ADMIN_KEY).responses.retrieve(mine.id).id == mine.id
