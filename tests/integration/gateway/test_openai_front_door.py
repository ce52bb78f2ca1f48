"""The OpenAI front door, driven by the official ``openai`` SDK with only ``base_url`` changed:
real gateway, real worker processes, real Redis, the fake runtime (and once the embedded one)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.fakes.runtime_server import FakeRuntime
from tests.integration.conftest import Stack
from tests.integration.gateway.conftest import (
    ADMIN_KEY,
    Gateway,
    GatewayStarter,
    run_openai_example,
)
from tests.support import EmbeddedRuntime, GenqProcess, eventually

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "examples" / "openai_chat.py"
HELLO = [{"role": "user", "content": "Say hello."}]
TEXT = "Hello, world!"  # the fake runtime's default tokens


def sdk(gateway: Gateway, key: str, **options: Any) -> OpenAI:
    """The SDK as a service would configure it, pointed at the gateway."""
    options.setdefault("max_retries", 0)
    return OpenAI(base_url=f"{gateway.url}/v1", api_key=key, **options)


def job_of(gateway: Gateway, completion_id: str) -> dict[str, Any]:
    """The genq job behind an OpenAI answer (its id is the job id, prefixed)."""
    job_id = completion_id.split("-", 1)[1]
    response = gateway.client(ADMIN_KEY).get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def jobs_of(gateway: Gateway, key: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = gateway.client(key).get("/v1/jobs").json()["data"]
    return data


@pytest.fixture
def served(stack: Stack, gateway: Gateway) -> Iterator[tuple[Gateway, str]]:
    """A gateway with one worker behind it, and an API key of tenant ``acme``."""
    stack.worker()
    yield gateway, gateway.key("acme")


def test_chat_completion_is_a_job_run_by_a_worker(
    served: tuple[Gateway, str], fake_runtime: FakeRuntime
) -> None:
    gateway, key = served
    reply = sdk(gateway, key).chat.completions.create(
        model="fake-model", messages=HELLO, max_tokens=16, user="u-1", store=False, seed=4
    )
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.content == TEXT
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens == 4
    assert reply.model == "fake-model"
    job = job_of(gateway, reply.id)
    assert reply.id.startswith("chatcmpl-")
    assert (job["status"], job["lane"], job["priority"], job["tenant"]) == (
        "succeeded",
        "interactive",
        7,
        "acme",
    )
    assert job["worker_id"]
    assert job["request"]["seed"] == 4 and job["request"]["max_tokens"] == 16
    assert fake_runtime.stats()["requests_by_path"]["/v1/chat/completions"] == 1


def test_streamed_chat_with_usage(served: tuple[Gateway, str]) -> None:
    gateway, key = served
    stream = sdk(gateway, key).chat.completions.create(
        model="fake-model",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1
    assert job_of(gateway, chunks[0].id)["status"] == "succeeded"


def test_the_documented_example_runs(served: tuple[Gateway, str]) -> None:
    gateway, key = served
    stdout = run_openai_example(gateway, key, EXAMPLE)
    assert stdout == f"{TEXT}\n4 tokens\n"
    assert [j["priority"] for j in jobs_of(gateway, key)] == [9]


def test_streamed_chat_without_usage(served: tuple[Gateway, str]) -> None:
    gateway, key = served
    chunks = list(
        sdk(gateway, key).chat.completions.create(model="fake-model", messages=HELLO, stream=True)
    )
    assert all(c.usage is None and c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == TEXT


def test_completions_plain_and_streamed(served: tuple[Gateway, str]) -> None:
    gateway, key = served
    client = sdk(gateway, key)
    reply = client.completions.create(model="fake-model", prompt="Once upon", max_tokens=8)
    assert reply.object == "text_completion" and reply.id.startswith("cmpl-")
    assert reply.choices[0].text == TEXT and reply.choices[0].finish_reason == "stop"
    assert job_of(gateway, reply.id)["kind"] == "completion"
    chunks = list(client.completions.create(model="fake-model", prompt="Once", stream=True))
    assert "".join(c.choices[0].text for c in chunks) == TEXT
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_embeddings_base64_and_float(served: tuple[Gateway, str]) -> None:
    gateway, key = served
    client = sdk(gateway, key)
    by_default = client.embeddings.create(model="fake-model", input=["red apple", "blue sky"])
    floats = client.embeddings.create(
        model="fake-model", input=["red apple", "blue sky"], encoding_format="float"
    )
    assert [d.index for d in by_default.data] == [0, 1]
    assert len(by_default.data[0].embedding) == 8
    for packed, plain in zip(by_default.data, floats.data, strict=True):
        assert packed.embedding == pytest.approx(plain.embedding, abs=1e-6)
    assert by_default.data[0].embedding != by_default.data[1].embedding
    assert by_default.usage.prompt_tokens > 0
    jobs = jobs_of(gateway, key)
    assert [(j["kind"], j["status"]) for j in jobs] == [("embedding", "succeeded")] * 2


def test_models_list_and_retrieve(gateway: Gateway) -> None:
    client = sdk(gateway, gateway.key("acme"))
    names = [m.id for m in client.models.list()]
    assert names[0] == "fake-model" and "gemma3-270m" in names  # default, then the runtime's
    assert client.models.retrieve("gemma3-270m").owned_by == "genq"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


BAD_CHATS: list[tuple[dict[str, Any], str]] = [
    ({"n": 2}, "n"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"logprobs": True}, "logprobs"),
    ({"temperature": 7}, "temperature"),
    ({"extra_body": {"mirostat": 2}}, "mirostat"),
]


@pytest.mark.parametrize(("options", "param"), BAD_CHATS, ids=[p for _o, p in BAD_CHATS])
def test_what_genq_cannot_honour_is_a_400_naming_it(
    gateway: Gateway, options: dict[str, Any], param: str
) -> None:
    key = gateway.key("acme")
    with pytest.raises(openai.BadRequestError) as raised:
        sdk(gateway, key).chat.completions.create(model="fake-model", messages=HELLO, **options)
    assert raised.value.param == param, raised.value.body
    assert raised.value.status_code == 400
    assert jobs_of(gateway, key) == []


def test_an_image_part_is_a_400_naming_it(gateway: Gateway) -> None:
    key = gateway.key("acme")
    content: Any = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    with pytest.raises(openai.BadRequestError) as raised:
        sdk(gateway, key).chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": content}]
        )
    assert raised.value.param == "messages[0].content[1]"
    assert jobs_of(gateway, key) == []


def test_an_unknown_model_is_not_found(gateway: Gateway) -> None:
    key = gateway.key("acme")
    with pytest.raises(openai.NotFoundError) as raised:
        sdk(gateway, key).chat.completions.create(model="no-such-model", messages=HELLO)
    assert raised.value.code == "model_not_found" and raised.value.param == "model"
    assert jobs_of(gateway, key) == []


def test_keys_and_tenants(gateway: Gateway) -> None:
    no_key = {"Authorization": openai.omit}  # the request goes out with no key at all
    with pytest.raises(openai.AuthenticationError) as raised:
        sdk(gateway, "unused").chat.completions.create(
            model="fake-model", messages=HELLO, extra_headers=no_key
        )
    assert raised.value.code == "invalid_api_key" and raised.value.type == "authentication_error"
    assert "send an API key" in raised.value.message
    with pytest.raises(openai.AuthenticationError):
        sdk(gateway, "genq_not-a-key").models.list()
    acme, other = gateway.key("acme"), gateway.key("other")
    # No worker: both stay queued. The same Idempotency-Key in two tenants is two jobs.
    ids = []
    for key in (acme, other):
        raw = sdk(gateway, key, timeout=httpx.Timeout(10, read=0.5))
        with pytest.raises(openai.APITimeoutError):
            raw.chat.completions.create(
                model="fake-model", messages=HELLO, extra_headers={"Idempotency-Key": "same-key"}
            )
        ids.append([job["id"] for job in jobs_of(gateway, key)])
    assert len(ids[0]) == len(ids[1]) == 1 and ids[0] != ids[1]
    assert gateway.client(other).get(f"/v1/jobs/{ids[0][0]}").status_code == 404


def test_the_key_rate_limit_is_a_rate_limit_error(start_gateway: GatewayStarter) -> None:
    gateway = start_gateway(rate_limit_per_second="0.01", rate_limit_burst="1")
    client = sdk(gateway, gateway.key("acme"))
    client.models.list()
    with pytest.raises(openai.RateLimitError) as raised:
        client.models.list()
    assert raised.value.code == "rate_limit_exceeded"
    assert int(raised.value.response.headers["Retry-After"]) >= 1


def test_a_job_that_fails_answers_in_openai_terms(
    served: tuple[Gateway, str], fake_runtime: FakeRuntime
) -> None:
    gateway, key = served
    fake_runtime.configure(context_tokens=3)  # the runtime refuses longer prompts
    long = [{"role": "user", "content": "one two three four five"}]
    client = sdk(gateway, key)
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="fake-model", messages=long)
    assert raised.value.code == "context_length_exceeded"
    assert raised.value.response.headers["x-should-retry"] == "false"
    job_id = raised.value.response.headers["X-Genq-Job-Id"]
    assert gateway.client(key).get(f"/v1/jobs/{job_id}").json()["status"] == "failed"
    with pytest.raises(openai.APIError, match="context length"):
        list(client.chat.completions.create(model="fake-model", messages=long, stream=True))


def test_a_retried_request_with_its_idempotency_key_is_one_job(
    stack: Stack, gateway: Gateway, fake_runtime: FakeRuntime
) -> None:
    fake_runtime.configure(tokens=[f"t{i} " for i in range(20)], token_delay_seconds=0.05)
    stack.worker()
    key = gateway.key("acme")
    # Each attempt gives up after 0.4 s; the SDK retries with the same headers until the job,
    # which takes about a second, is done.
    client = sdk(gateway, key, timeout=httpx.Timeout(10, read=0.4), max_retries=8)
    reply = client.chat.completions.create(
        model="fake-model", messages=HELLO, extra_headers={"Idempotency-Key": "retry-me"}
    )
    assert reply.choices[0].message.content == "".join(f"t{i} " for i in range(20))
    assert len(jobs_of(gateway, key)) == 1
    assert fake_runtime.stats()["requests_by_path"]["/v1/chat/completions"] == 1


def test_a_client_that_hangs_up_mid_stream_cancels_its_job(
    stack: Stack, gateway: Gateway, fake_runtime: FakeRuntime
) -> None:
    fake_runtime.configure(tokens=[f"t{i} " for i in range(400)], token_delay_seconds=0.05)
    stack.worker()
    key = gateway.key("acme")
    stream = sdk(gateway, key).chat.completions.create(
        model="fake-model", messages=HELLO, stream=True
    )
    job_id = stream.response.headers["X-Genq-Job-Id"]
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    stream.close()
    api = gateway.client(key)

    def status() -> str:
        value: str = api.get(f"/v1/jobs/{job_id}").json()["status"]
        return value

    assert eventually(lambda: status() == "cancelled", 15), status()
    assert fake_runtime.wait_until(lambda: fake_runtime.disconnects >= 1)


def test_a_client_that_hangs_up_while_queued_cancels_its_job(gateway: Gateway) -> None:
    key = gateway.key("acme")  # no worker: the job stays queued
    with pytest.raises(openai.APITimeoutError):
        sdk(gateway, key, timeout=httpx.Timeout(10, read=0.5)).chat.completions.create(
            model="fake-model", messages=HELLO
        )
    api = gateway.client(key)
    assert eventually(lambda: [j["status"] for j in jobs_of(gateway, key)] == ["cancelled"], 10)
    assert api.get("/v1/jobs", params={"status": "queued"}).json()["data"] == []


def test_with_an_idempotency_key_a_hang_up_waits_for_a_retry(
    stack: Stack, start_gateway: GatewayStarter
) -> None:
    gateway = start_gateway(openai_reattach_seconds="3")
    key = gateway.key("acme")  # no worker yet: the jobs stay queued
    impatient = sdk(gateway, key, timeout=httpx.Timeout(10, read=0.5))

    def ask(idempotency_key: str, client: OpenAI = impatient) -> Any:
        return client.chat.completions.create(
            model="fake-model", messages=HELLO, extra_headers={"Idempotency-Key": idempotency_key}
        )

    # Nobody comes back: cancelled once the grace has passed, not at the hang-up.
    with pytest.raises(openai.APITimeoutError):
        ask("left")
    statuses = lambda: [j["status"] for j in jobs_of(gateway, key)]  # noqa: E731
    assert statuses() == ["queued"]
    assert eventually(lambda: statuses() == ["cancelled"], 15), statuses()
    # A retry within the grace keeps the job, and gets its answer.
    with pytest.raises(openai.APITimeoutError):
        ask("back")
    answers: list[Any] = []
    retry = threading.Thread(target=lambda: answers.append(ask("back", sdk(gateway, key))))
    retry.start()
    gateway.process.wait_for_log("request(s) came back for it", timeout=15)
    stack.worker()
    retry.join(30)
    assert answers and answers[0].choices[0].message.content == TEXT
    assert sorted(statuses()) == ["cancelled", "succeeded"]


def test_past_the_queue_limit_a_429_with_retry_after(start_gateway: GatewayStarter) -> None:
    gateway = start_gateway(openai_max_queued="2")
    key = gateway.key("acme")
    api = gateway.client(key)
    for _ in range(2):  # no worker: they stay queued
        assert api.post("/v1/jobs", json={"messages": HELLO}).status_code == 201
    with pytest.raises(openai.RateLimitError) as raised:
        sdk(gateway, key).chat.completions.create(model="fake-model", messages=HELLO)
    assert int(raised.value.response.headers["Retry-After"]) >= 1
    assert raised.value.code == "queue_full"
    assert len(jobs_of(gateway, key)) == 2
    # Another model's queue is its own.
    with pytest.raises(openai.APITimeoutError):
        sdk(gateway, key, timeout=httpx.Timeout(10, read=0.5)).chat.completions.create(
            model="gemma3-270m", messages=HELLO
        )


def test_priority_header_jumps_the_queue(
    stack: Stack, gateway: Gateway, fake_runtime: FakeRuntime
) -> None:
    fake_runtime.configure(tokens=["x "] * 400, token_delay_seconds=0.05)
    stack.worker()  # one slot
    key = gateway.key("acme")
    api = gateway.client(key)
    blocker = api.post("/v1/jobs", json={"messages": HELLO, "priority": 9}).json()["id"]
    assert eventually(lambda: api.get(f"/v1/jobs/{blocker}").json()["status"] == "running", 15)
    replies: dict[int, list[str]] = {1: [], 9: []}

    def ask(priority: int) -> Callable[[], None]:
        def run() -> None:
            reply = sdk(gateway, key, timeout=60).chat.completions.create(
                model="fake-model",
                messages=HELLO,
                extra_headers={"X-Genq-Priority": str(priority)},
            )
            replies[priority].append(reply.id.split("-", 1)[1])

        return run

    def queued() -> int:
        return len(api.get("/v1/jobs", params={"status": "queued"}).json()["data"])

    threads = [threading.Thread(target=ask(1)) for _ in range(3)]
    for thread in threads:
        thread.start()
    assert eventually(lambda: queued() == 3, 15)
    threads.append(threading.Thread(target=ask(9)))
    threads[-1].start()
    assert eventually(lambda: queued() == 4, 15)
    fake_runtime.configure(tokens=["y"], token_delay_seconds=0.0)
    assert api.post(f"/v1/jobs/{blocker}/cancel").status_code == 200
    for thread in threads:
        thread.join(60)
    assert len(replies[1]) == 3 and len(replies[9]) == 1
    started = {
        job_id: api.get(f"/v1/jobs/{job_id}").json()["started_at"]
        for job_id in replies[1] + replies[9]
    }
    urgent = started[replies[9][0]]
    assert all(urgent < started[job_id] for job_id in replies[1]), started


@pytest.mark.runtime
def test_streamed_chat_against_the_embedded_runtime(
    stack_env: dict[str, str],
    start_genq: Callable[..., GenqProcess],
    embedded_runtime: EmbeddedRuntime,
) -> None:
    env = {
        **stack_env,
        "GENQ_RUNTIME_URL": embedded_runtime.url,
        "GENQ_DEFAULT_MODEL": embedded_runtime.model,
    }
    real_stack = Stack(env=env, start_genq=start_genq)
    starter = GatewayStarter(real_stack)
    try:
        gateway = starter()
        real_stack.worker()
        stream = sdk(gateway, gateway.key("acme"), timeout=120).chat.completions.create(
            model=embedded_runtime.model,
            messages=[{"role": "user", "content": "Tell me about the sea."}],
            max_tokens=24,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert len(text.strip()) > 5
        usage = chunks[-1].usage
        assert usage is not None and 0 < usage.completion_tokens <= 24
        assert job_of(gateway, chunks[0].id)["result"]["text"] == text
    finally:
        starter.close()
