"""Both runtime adapters against the fake runtime: a real HTTP server with faults on demand."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from schemas import ErrorCode, JobRequest, PermanentError, TransientError
from tests.fakes import FakeRuntime, Fault, FaultSpec
from tests.support.ports import free_port
from workers.runtimes import Runtime, build_runtime

pytestmark = pytest.mark.integration

KINDS = ("openai", "ollama")
MODEL = "fake-model"
CHAT = JobRequest(kind="chat", messages=[{"role": "user", "content": "tell me a story"}])
COMPLETION = JobRequest(kind="completion", prompt="Once upon a time")


@pytest.fixture
def fake() -> Iterator[FakeRuntime]:
    with FakeRuntime() as server:
        yield server


@pytest.fixture
def client(fake: FakeRuntime) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, timeout=5.0) as http:
        yield http


@pytest.fixture(params=KINDS)
def rt(request: pytest.FixtureRequest, client: httpx.Client) -> Runtime:
    return build_runtime(request.param, client)


@pytest.mark.parametrize("job", [CHAT, COMPLETION], ids=["chat", "completion"])
def test_happy_stream_has_deltas_then_finish_with_usage(rt: Runtime, job: JobRequest) -> None:
    events = list(rt.stream(job, MODEL))
    assert "".join(e.delta for e in events) == "Hello, world!"
    assert [e.finish_reason for e in events] == [None] * 4 + ["stop"]
    usage = events[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (4, 4, 8)


def test_finished_streams_reuse_one_connection(rt: Runtime, fake: FakeRuntime) -> None:
    # A stream read to its end hands its keep-alive connection back to the pool: a worker
    # does not pay a TCP connect (and the runtime an accept) for every job.
    for _ in range(3):
        assert "".join(e.delta for e in rt.stream(CHAT, MODEL)) == "Hello, world!"
    assert fake.stats()["connections"] == 1


def test_max_tokens_ends_with_length(rt: Runtime) -> None:
    job = JobRequest(kind="completion", prompt="a b", max_tokens=2)
    events = list(rt.stream(job, MODEL))
    assert [e.delta for e in events] == ["Hello", ",", ""]
    assert events[-1].finish_reason == "length"


def test_embeddings_one_vector_per_input(rt: Runtime) -> None:
    result = rt.embed(["one two three", "four"], MODEL)
    assert len(result.vectors) == 2 and all(len(v) == 8 for v in result.vectors)
    assert result.usage.prompt_tokens == 4


def test_health(rt: Runtime, fake: FakeRuntime) -> None:
    health = rt.health()
    assert health.ok and MODEL in health.detail


@pytest.mark.parametrize(
    ("fault", "code", "retry_after"),
    [
        (Fault.status(503, retry_after=1), ErrorCode.RUNTIME_UNAVAILABLE, 1.0),
        (Fault.status(429, retry_after=2), ErrorCode.RATE_LIMITED, 2.0),
        (Fault.status(500), ErrorCode.RUNTIME_UNAVAILABLE, None),
    ],
    ids=["503", "429", "500"],
)
def test_overload_is_transient_and_honours_retry_after(
    rt: Runtime, fake: FakeRuntime, fault: FaultSpec, code: ErrorCode, retry_after: float | None
) -> None:
    fake.fail_next.append(fault)
    with pytest.raises(TransientError) as caught:
        list(rt.stream(CHAT, MODEL))
    assert caught.value.code == code
    assert caught.value.retry_after_seconds == retry_after
    assert list(rt.stream(CHAT, MODEL))[-1].finish_reason == "stop"  # the fault was one-shot


def test_embed_overload_is_transient(rt: Runtime, fake: FakeRuntime) -> None:
    fake.fail_next.append(Fault.status(503, retry_after=3))
    with pytest.raises(TransientError) as caught:
        rt.embed(["x"], MODEL)
    assert caught.value.retry_after_seconds == 3.0


def test_dropped_stream_is_transient_after_partial_output(rt: Runtime, fake: FakeRuntime) -> None:
    fake.fail_next.append(Fault.drop_after(2))
    received: list[str] = []
    with pytest.raises(TransientError) as caught:
        for event in rt.stream(CHAT, MODEL):
            received.append(event.delta)
    assert received == ["Hello", ","]
    assert caught.value.code == ErrorCode.RUNTIME_UNAVAILABLE


def test_error_line_under_200_is_transient(rt: Runtime, fake: FakeRuntime) -> None:
    fake.fail_next.append(Fault.error_line("CUDA error: out of memory", after_tokens=1))
    with pytest.raises(TransientError) as caught:
        list(rt.stream(COMPLETION, MODEL))
    assert caught.value.code == ErrorCode.RUNTIME_ERROR
    assert "out of memory" in caught.value.message


@pytest.mark.parametrize("status", [400, 500])
def test_context_overflow_is_permanent(rt: Runtime, fake: FakeRuntime, status: int) -> None:
    message = "Requested tokens (3000) exceed context window of 2048"
    fake.fail_next.append(Fault.status(status, message=message))
    with pytest.raises(PermanentError) as caught:
        list(rt.stream(COMPLETION, MODEL))
    assert caught.value.code == ErrorCode.CONTEXT_LENGTH_EXCEEDED


def test_unknown_model_is_permanent(rt: Runtime) -> None:
    with pytest.raises(PermanentError) as caught:
        list(rt.stream(CHAT, "no-such-model"))
    assert caught.value.code == ErrorCode.MODEL_NOT_FOUND
    assert "no-such-model" in caught.value.message
    with pytest.raises(PermanentError) as embed_caught:
        rt.embed(["x"], "no-such-model")
    assert embed_caught.value.code == ErrorCode.MODEL_NOT_FOUND


def test_slow_tokens_arrive_incrementally(rt: Runtime, fake: FakeRuntime) -> None:
    fake.token_delay_seconds = 0.1
    started = time.monotonic()
    arrivals = [time.monotonic() - started for event in rt.stream(CHAT, MODEL) if event.delta]
    assert len(arrivals) == 4
    assert arrivals[0] < arrivals[-1] - 0.25  # the first token did not wait for the last
    assert all(later - earlier > 0.05 for earlier, later in itertools.pairwise(arrivals))


def test_closing_the_stream_stops_the_runtime(rt: Runtime, fake: FakeRuntime) -> None:
    fake.tokens = ["tok"] * 500
    fake.token_delay_seconds = 0.01
    events = rt.stream(CHAT, MODEL)
    for _ in range(3):
        next(events)
    events.close()  # type: ignore[attr-defined]
    # The handler has returned (no stream active): nothing more can be sent.
    assert fake.wait_until(lambda: fake.disconnects == 1 and fake.streams_active == 0)
    assert fake.tokens_sent < 50
    assert fake.streams_completed == 0


def test_read_timeout_is_transient(fake: FakeRuntime) -> None:
    fake.token_delay_seconds = 1.0
    timeout = httpx.Timeout(5.0, read=0.2)
    with (
        httpx.Client(base_url=fake.url, timeout=timeout) as slow,
        pytest.raises(TransientError, match="timed out"),
    ):
        list(build_runtime("openai", slow).stream(CHAT, MODEL))


@pytest.mark.parametrize("kind", KINDS)
def test_nothing_listening_is_transient(kind: str) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{free_port()}", timeout=2.0) as nowhere:
        rt = build_runtime(kind, nowhere)
        with pytest.raises(TransientError) as caught:
            list(rt.stream(CHAT, MODEL))
        assert caught.value.code == ErrorCode.RUNTIME_UNAVAILABLE
        assert not rt.health().ok


def test_job_delay_range(rt: Runtime, fake: FakeRuntime) -> None:
    fake.job_delay_seconds = (0.2, 0.3)
    started = time.monotonic()
    rt.embed(["x"], MODEL)
    assert 0.2 <= time.monotonic() - started < 1.0


def test_instant_mode_keeps_up_with_a_benchmark(rt: Runtime, fake: FakeRuntime) -> None:
    started = time.monotonic()
    for _ in range(300):
        list(rt.stream(COMPLETION, MODEL))
    assert time.monotonic() - started < 5.0
    assert fake.wait_until(lambda: fake.streams_completed == 300)


def test_subprocess_fake_is_driven_over_http() -> None:
    argv = [sys.executable, "-m", "tests.fakes.runtime_server", "--port", "0", "--mode", "instant"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip().rsplit(" ", 1)[-1]
            assert url.startswith("http://127.0.0.1:")
            with httpx.Client(base_url=url, timeout=5.0) as http:
                fault = Fault.status(503, retry_after=4, path="/api/")
                config = {"fail_next": [fault.to_json()], "known_models": ["m1"]}
                assert http.post("/_fake/config", json=config).status_code == 200
                assert http.post("/_fake/config", json={"bogus": 1}).status_code == 400
                with pytest.raises(TransientError) as caught:
                    list(build_runtime("ollama", http).stream(CHAT, "m1"))
                assert caught.value.retry_after_seconds == 4.0
                assert list(build_runtime("openai", http).stream(CHAT, "m1"))[-1].usage is not None
                stats = http.get("/_fake/stats").json()
                assert stats["requests_seen"] == 2 and stats["streams_completed"] == 1
        finally:
            process.terminate()
            process.wait(timeout=10)
