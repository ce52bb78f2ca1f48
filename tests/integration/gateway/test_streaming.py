"""SSE over the real gateway: chunks as they come, disconnect and resume with no gap or repeat."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse

from tests.fakes.runtime_server import FakeRuntime
from tests.integration.conftest import Stack
from tests.integration.gateway.conftest import Gateway, GatewayStarter
from tests.support import EmbeddedRuntime, GenqProcess, eventually, stream_reader_blocked

pytestmark = pytest.mark.integration

CHAT = {"messages": [{"role": "user", "content": "count for me"}]}
TOKENS = [f"w{i} " for i in range(40)]


def events(
    api: httpx.Client,
    job_id: str,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    stop_after_deltas: int | None = None,
) -> list[ServerSentEvent]:
    """Read the job's SSE stream to its end, or hang up after ``stop_after_deltas`` deltas."""
    seen: list[ServerSentEvent] = []
    with connect_sse(
        api,
        "GET",
        f"/v1/jobs/{job_id}/stream",
        headers=headers or {},
        params=params or {},
        timeout=httpx.Timeout(30, read=30),
    ) as source:
        assert source.response.status_code == 200, source.response.read()
        assert source.response.headers["content-type"].startswith("text/event-stream")
        for event in source.iter_sse():
            seen.append(event)
            deltas = sum(e.event == "delta" for e in seen)
            if event.event == "end" or (stop_after_deltas and deltas >= stop_after_deltas):
                break
    return seen


def text_of(seen: list[ServerSentEvent]) -> str:
    return "".join(json.loads(e.data)["delta"] for e in seen if e.event == "delta")


def assert_resumes_exactly(api: httpx.Client, job_id: str, stop_after: int) -> list[Any]:
    """Hang up midway, resume with Last-Event-ID; the two halves join with no gap or repeat."""
    first = events(api, job_id, stop_after_deltas=stop_after)
    assert first and first[-1].event == "delta", [e.event for e in first]
    rest = events(api, job_id, headers={"Last-Event-ID": first[-1].id})
    assert rest[-1].event == "end"
    ids = [int(e.id) for e in first + rest]
    assert ids == list(range(ids[0], ids[0] + len(ids))), ids
    final = api.get(f"/v1/jobs/{job_id}/wait", params={"timeout": 60}, timeout=70).json()
    assert final["status"] == "succeeded"
    assert text_of(first) + text_of(rest) == final["result"]["text"]
    return [first, rest, final]


def test_disconnect_midway_then_resume_with_last_event_id(
    stack: Stack, gateway: Gateway, fake_runtime: FakeRuntime
) -> None:
    fake_runtime.configure(tokens=TOKENS, token_delay_seconds=0.05)
    stack.worker()
    api = gateway.client(gateway.key("acme"))
    job_id = api.post("/v1/jobs", json=CHAT).json()["id"]
    first, rest, final = assert_resumes_exactly(api, job_id, stop_after=5)
    assert final["result"]["text"] == "".join(TOKENS)
    assert (first[0].event, json.loads(first[0].data)) == ("start", {"attempt": 1})
    assert set(json.loads(first[1].data)) == {"delta"}
    end = json.loads(rest[-1].data)
    assert end["status"] == "succeeded" and end["finish_reason"] == "stop"
    assert end["usage"]["completion_tokens"] == len(TOKENS)
    assert fake_runtime.streams_completed == 1  # the SSE hang-up did not touch the generation


def test_keep_alive_pings_are_no_events_to_a_reader(
    stack: Stack, start_gateway: GatewayStarter, fake_runtime: FakeRuntime
) -> None:
    """A reader that keeps the last ``id:`` (httpx-sse, the openai SDK) turned the blank line
    of a ``: ping`` block into an event repeating that id; with tokens slower than the pings
    (the embedded model) a resumed stream seemed to repeat an event."""
    gateway = start_gateway(gateway_sse_ping_seconds="0.1")
    fake_runtime.configure(tokens=TOKENS[:5], token_delay_seconds=0.4)
    stack.worker()
    api = gateway.client(gateway.key("acme"))
    job_id = api.post("/v1/jobs", json=CHAT).json()["id"]
    seen = events(api, job_id)
    kinds = [e.event for e in seen]
    assert kinds[0] == "start" and kinds[-1] == "end" and set(kinds[1:-1]) == {"delta"}, kinds
    assert [int(e.id) for e in seen] == list(range(1, len(seen) + 1))
    assert text_of(seen) == "".join(TOKENS[:5])


def test_resume_after_the_job_finished_with_starting_after(
    stack: Stack, gateway: Gateway, fake_runtime: FakeRuntime
) -> None:
    fake_runtime.configure(tokens=TOKENS, token_delay_seconds=0.02)
    stack.worker()
    api = gateway.client(gateway.key("acme"))
    job_id = api.post("/v1/jobs", json=CHAT).json()["id"]
    final = api.get(f"/v1/jobs/{job_id}/wait", params={"timeout": 30}, timeout=40).json()
    whole = events(api, job_id)
    assert text_of(whole) == final["result"]["text"]
    tail = events(api, job_id, params={"starting_after": 2})
    assert [int(e.id) for e in tail] == [int(e.id) for e in whole][2:]
    # Last-Event-ID wins over starting_after (a reconnecting EventSource keeps the URL).
    tail3 = events(api, job_id, params={"starting_after": 1}, headers={"Last-Event-ID": "3"})
    assert [int(e.id) for e in tail3] == [int(e.id) for e in whole][3:]
    started = time.monotonic()
    after_end = events(api, job_id, headers={"Last-Event-ID": whole[-1].id})
    assert after_end == [] and time.monotonic() - started < 2


def test_client_connected_before_the_job_starts_waits_for_it(
    stack: Stack, gateway: Gateway, fake_runtime: FakeRuntime
) -> None:
    fake_runtime.configure(tokens=TOKENS[:10], token_delay_seconds=0.02)
    api = gateway.client(gateway.key("acme"))
    job_id = api.post("/v1/jobs", json=CHAT).json()["id"]
    received: list[list[ServerSentEvent] | BaseException] = []

    def read() -> None:
        try:
            received.append(events(api, job_id))
        except BaseException as exc:  # reported below, not lost in the thread
            received.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    assert eventually(lambda: stream_reader_blocked(stack.client().redis))
    assert reader.is_alive()  # connected, nothing to send yet
    stack.worker()
    reader.join(timeout=30)
    assert not reader.is_alive()
    (seen,) = received
    assert isinstance(seen, list), repr(seen)
    assert seen[-1].event == "end", [(e.event, e.data) for e in seen]
    assert text_of(seen) == "".join(TOKENS[:10])


@pytest.fixture
def embedded_gateway(
    stack_env: dict[str, str],
    start_genq: Callable[..., GenqProcess],
    embedded_runtime: EmbeddedRuntime,
) -> Iterator[tuple[Stack, Gateway]]:
    env = {
        **stack_env,
        "GENQ_RUNTIME_URL": embedded_runtime.url,
        "GENQ_DEFAULT_MODEL": embedded_runtime.model,
    }
    real_stack = Stack(env=env, start_genq=start_genq)
    starter = GatewayStarter(real_stack)
    yield real_stack, starter()
    starter.close()
    for client in real_stack.clients:
        client.close()


@pytest.mark.runtime
def test_resume_against_the_embedded_runtime(embedded_gateway: tuple[Stack, Gateway]) -> None:
    real_stack, gateway = embedded_gateway
    real_stack.worker()
    api = gateway.client(gateway.key("acme"), timeout=120)
    body = {
        "kind": "completion",
        "prompt": "Once upon a time, in a small village,",
        "max_tokens": 48,
        "temperature": 0,
        "seed": 3,
    }
    job_id = api.post("/v1/jobs", json=body).json()["id"]
    _first, rest, final = assert_resumes_exactly(api, job_id, stop_after=3)
    assert len(final["result"]["text"]) > 20
    assert json.loads(rest[-1].data)["usage"]["completion_tokens"] > 3
