"""One contract, two runtimes: the fake runtime server and the embedded llama.cpp server give
the runtime adapter the same streaming, usage and error shapes, so the fake cannot drift from
the real thing.

The fake runs twice: as OpenAI and vLLM behave (a usage chunk when asked, errors as HTTP
statuses) and as llama-cpp-python 0.3 does (no usage chunk: the adapter counts usage; a
streamed request it cannot fit ends as an empty 200). Faults only the fake can produce
(503 with Retry-After, 429, dropped streams, unknown models: llama.cpp serves any model name
with its one model) are tested against the fake alone, in ``test_runtime_fake``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from schemas import ErrorCode, GenqError, JobRequest
from tests.fakes import FakeRuntime
from tests.support import EmbeddedRuntime
from workers.runtimes import Runtime, StreamEvent, build_runtime

pytestmark = pytest.mark.integration

CONTEXT_TOKENS = 2048  # the embedded runtime's (constants.EMBEDDED_CONTEXT_TOKENS)
SAMPLING: dict[str, Any] = {"temperature": 0, "seed": 7}
CHAT = {"kind": "chat", "messages": [{"role": "user", "content": "Name three colours."}]}
COMPLETION = {"kind": "completion", "prompt": "Once upon a time"}


@dataclass(frozen=True)
class Target:
    """A runtime under contract: its base URL, the model name to ask for, and whether it
    behaves like llama-cpp-python."""

    name: str
    url: str
    model: str
    llama: bool


@pytest.fixture(
    params=[
        "fake-openai",
        "fake-llama",
        pytest.param("embedded", marks=[pytest.mark.runtime, pytest.mark.slow]),
    ]
)
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    if request.param == "embedded":
        embedded: EmbeddedRuntime = request.getfixturevalue("embedded_runtime")
        assert embedded.settings.embedded_context_tokens == CONTEXT_TOKENS
        yield Target(request.param, embedded.url, embedded.model, llama=True)
        return
    llama = request.param == "fake-llama"
    with FakeRuntime(
        stream_usage=not llama, llama_stream_errors=llama, context_tokens=CONTEXT_TOKENS
    ) as fake:
        yield Target(request.param, fake.url, "fake-model", llama=llama)


@pytest.fixture
def http(target: Target) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=target.url, timeout=120) as client:
        yield client


@pytest.fixture
def runtime(http: httpx.Client) -> Runtime:
    return build_runtime("openai", http)


def job(fields: dict[str, Any], **params: Any) -> JobRequest:
    return JobRequest.model_validate({**fields, **SAMPLING, **params})


def split(events: list[StreamEvent]) -> tuple[list[str], StreamEvent]:
    """The deltas, and the one final event that must come last."""
    *deltas, final = events
    assert all(e.delta and e.finish_reason is None and e.usage is None for e in deltas), deltas
    assert final.delta == "" and final.finish_reason is not None, final
    return [e.delta for e in deltas], final


@pytest.mark.parametrize("fields", [CHAT, COMPLETION], ids=["chat", "completion"])
def test_a_stream_is_deltas_then_one_final_event_with_usage(
    runtime: Runtime, target: Target, fields: dict[str, Any]
) -> None:
    deltas, final = split(list(runtime.stream(job(fields, max_tokens=8), target.model)))
    assert deltas and "".join(deltas).strip()
    assert final.finish_reason in {"stop", "length"}
    usage = final.usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens == len(deltas) <= 8  # one token per chunk, both runtimes
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_max_tokens_ends_the_stream_with_length(runtime: Runtime, target: Target) -> None:
    deltas, final = split(list(runtime.stream(job(COMPLETION, max_tokens=2), target.model)))
    assert final.finish_reason == "length"
    assert 1 <= len(deltas) <= 2
    assert final.usage is not None and final.usage.completion_tokens == len(deltas)


def overlong(chat: bool) -> tuple[str, dict[str, Any]]:
    """The path and request fields of a generation whose prompt cannot fit the context."""
    text = "word " * (CONTEXT_TOKENS + 16)
    if chat:
        return "/v1/chat/completions", {"messages": [{"role": "user", "content": text}]}
    return "/v1/completions", {"prompt": text}


@pytest.mark.parametrize("chat", [True, False], ids=["chat", "completion"])
def test_a_prompt_longer_than_the_context_is_refused_with_context_length_exceeded(
    http: httpx.Client, target: Target, chat: bool
) -> None:
    path, request = overlong(chat)
    answer = http.post(path, json={"model": target.model, "max_tokens": 4, **request})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert {"message", "type", "code"} <= set(error)
    assert error["code"] == "context_length_exceeded"
    assert str(CONTEXT_TOKENS) in error["message"]


@pytest.mark.parametrize("chat", [True, False], ids=["chat", "completion"])
def test_a_streamed_prompt_longer_than_the_context_fails_without_output(
    runtime: Runtime, target: Target, chat: bool
) -> None:
    _path, request = overlong(chat)
    kind = "chat" if chat else "completion"
    received: list[StreamEvent] = []
    with pytest.raises(GenqError) as caught:
        received.extend(runtime.stream(job({"kind": kind, **request}, max_tokens=4), target.model))
    assert received == []
    if target.llama:
        # llama-cpp-python answers 200 and ends the stream empty: all the adapter sees is a
        # stream cut off before its first chunk, which it must take for a runtime failure.
        assert (caught.value.code, caught.value.retryable) == (ErrorCode.RUNTIME_UNAVAILABLE, True)
    else:
        assert caught.value.code == ErrorCode.CONTEXT_LENGTH_EXCEEDED
        assert not caught.value.retryable and str(CONTEXT_TOKENS) in caught.value.message


def test_embeddings_are_one_vector_per_input_with_usage(runtime: Runtime, target: Target) -> None:
    inputs = ["hello world", "a longer second input"]
    result = runtime.embed(inputs, target.model)
    assert len(result.vectors) == 2
    widths = {len(vector) for vector in result.vectors}
    assert len(widths) == 1 and widths.pop() > 0
    assert result.vectors[0] != result.vectors[1]
    assert all(isinstance(x, float) for vector in result.vectors for x in vector)
    assert result.usage.prompt_tokens > 0


def test_health_names_the_model(runtime: Runtime, target: Target) -> None:
    health = runtime.health()
    assert health.ok, health.detail
    assert target.model in health.detail


def test_a_stream_closed_early_leaves_the_runtime_serving(runtime: Runtime, target: Target) -> None:
    events = runtime.stream(job(COMPLETION, max_tokens=64), target.model)
    assert next(events).delta
    events.close()  # type: ignore[attr-defined]
    deltas, final = split(list(runtime.stream(job(CHAT, max_tokens=4), target.model)))
    assert deltas and final.finish_reason in {"stop", "length"}


def sse_payloads(http: httpx.Client, path: str, body: dict[str, Any]) -> list[Any]:
    """The ``data:`` payloads of a raw streamed answer, decoded (``[DONE]`` kept as is)."""
    with http.stream("POST", path, json=body) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        data = [line[5:].strip() for line in answer.iter_lines() if line.startswith("data:")]
    return [d if d == "[DONE]" else json.loads(d) for d in data]


@pytest.mark.parametrize("chat", [True, False], ids=["chat", "completion"])
def test_the_wire_format_is_openais(http: httpx.Client, target: Target, chat: bool) -> None:
    path = "/v1/chat/completions" if chat else "/v1/completions"
    request = {"messages": CHAT["messages"]} if chat else {"prompt": COMPLETION["prompt"]}
    body = {"model": target.model, "stream": True, "max_tokens": 4, **SAMPLING, **request}
    *chunks, done = sse_payloads(http, path, body)
    assert done == "[DONE]"
    with_choices = [c for c in chunks if c["choices"]]
    assert all(c.get("usage") is None for c in with_choices)  # a usage chunk has no choices
    for chunk in with_choices:
        assert {"id", "object", "created", "model", "choices"} <= set(chunk)
        assert chunk["object"] == ("chat.completion.chunk" if chat else "text_completion")
        [choice] = chunk["choices"]
        assert choice["index"] == 0 and "finish_reason" in choice
    *middle, last = with_choices
    assert last["choices"][0]["finish_reason"] in {"stop", "length"}
    assert all(c["choices"][0]["finish_reason"] is None for c in middle)
    if chat:
        assert middle[0]["choices"][0]["delta"] == {"role": "assistant"}
        assert all(set(c["choices"][0]["delta"]) == {"content"} for c in middle[1:])
        assert last["choices"][0]["delta"] == {}
    else:
        assert all(isinstance(c["choices"][0]["text"], str) for c in with_choices)
