"""Runtime adapters against ``httpx.MockTransport``: error mapping, stream parsing, embeddings."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from schemas import ErrorCode, JobRequest, PermanentError, TransientError, Usage
from workers.runtimes import (
    OllamaRuntime,
    OpenAIRuntime,
    Runtime,
    StreamEvent,
    build_runtime,
    error_for_status,
    parse_retry_after,
)

Handler = Callable[[httpx.Request], httpx.Response]
KINDS = ("openai", "ollama")
CHAT = JobRequest(kind="chat", messages=[{"role": "user", "content": "say hi"}])
COMPLETION = JobRequest(kind="completion", prompt="Once upon a time")


def runtime(kind: str, handler: Handler, base_url: str = "http://runtime.test") -> Runtime:
    client = httpx.Client(transport=httpx.MockTransport(handler), base_url=base_url)
    return build_runtime(kind, client)


def answer(status: int = 200, body: bytes | str = b"", **headers: str) -> Handler:
    content = body.encode() if isinstance(body, str) else body
    return lambda request: httpx.Response(status, content=content, headers=headers)


def sse(*events: object) -> bytes:
    return b"".join(
        b"data: " + (e.encode() if isinstance(e, str) else json.dumps(e).encode()) + b"\r\n\r\n"
        for e in events
    )


def ndjson(*lines: object) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def chat_chunk(content: str | None = None, finish: str | None = None) -> dict[str, object]:
    delta = {} if content is None else {"content": content}
    return {
        "object": "chat.completion.chunk",
        "choices": [{"delta": delta, "finish_reason": finish}],
    }


# -- classification (pure) -------------------------------------------------------------------

CONTEXT_400 = '{"error": {"message": "Requested tokens (3000) exceed context window of 2048"}}'
OPENAI_CONTEXT = (
    '{"error": {"message": "This model\'s maximum context length is 2048 tokens", '
    '"code": "context_length_exceeded"}}'
)
OPENAI_404 = (
    '{"error": {"message": "The model `x` does not exist", "type": "invalid_request_error", '
    '"code": "model_not_found"}}'
)
OLLAMA_404 = '{"error": "model \\"x\\" not found, try pulling it first"}'


@pytest.mark.parametrize(
    ("status", "body", "error_class", "code"),
    [
        (429, "slow down", TransientError, ErrorCode.RATE_LIMITED),
        (500, "", TransientError, ErrorCode.RUNTIME_UNAVAILABLE),
        (502, "<html>bad gateway</html>", TransientError, ErrorCode.RUNTIME_UNAVAILABLE),
        (503, '{"error": "loading model"}', TransientError, ErrorCode.RUNTIME_UNAVAILABLE),
        (504, "", TransientError, ErrorCode.RUNTIME_UNAVAILABLE),
        (500, CONTEXT_400, PermanentError, ErrorCode.CONTEXT_LENGTH_EXCEEDED),
        (400, CONTEXT_400, PermanentError, ErrorCode.CONTEXT_LENGTH_EXCEEDED),
        (400, OPENAI_CONTEXT, PermanentError, ErrorCode.CONTEXT_LENGTH_EXCEEDED),
        (400, '{"error": "input exceeds the context window"}', PermanentError, "context"),
        (400, '{"error": {"message": "bad top_p"}}', PermanentError, ErrorCode.INVALID_REQUEST),
        (422, '{"detail": [{"msg": "field required"}]}', PermanentError, "invalid"),
        (404, OPENAI_404, PermanentError, ErrorCode.MODEL_NOT_FOUND),
        (404, OLLAMA_404, PermanentError, ErrorCode.MODEL_NOT_FOUND),
        (404, "404 page not found", PermanentError, ErrorCode.MODEL_NOT_FOUND),
        (400, OLLAMA_404, PermanentError, ErrorCode.MODEL_NOT_FOUND),
        (401, '{"error": "bad key"}', PermanentError, ErrorCode.UNAUTHORIZED),
    ],
)
def test_error_for_status(
    status: int, body: str, error_class: type[Exception], code: ErrorCode | str
) -> None:
    error = error_for_status(status, body, target="openai runtime at http://h/v1/completions")
    assert type(error) is error_class
    expected = {"context": ErrorCode.CONTEXT_LENGTH_EXCEEDED, "invalid": ErrorCode.INVALID_REQUEST}
    assert error.code == expected.get(code, code)
    assert f"HTTP {status}" in error.message
    assert "http://h/v1/completions" in error.message


NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("1", 1.0),
        ("2.5", 2.5),
        ("-3", 0.0),
        ("soon", None),
        ("inf", None),
        (format_datetime(NOW + timedelta(seconds=10), usegmt=True), 10.0),
        (format_datetime(NOW - timedelta(seconds=10), usegmt=True), 0.0),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


# -- HTTP status through both adapters ---------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("status", "headers", "error_class", "code", "retry_after"),
    [
        (503, {"Retry-After": "1"}, TransientError, ErrorCode.RUNTIME_UNAVAILABLE, 1.0),
        (429, {"Retry-After": "2"}, TransientError, ErrorCode.RATE_LIMITED, 2.0),
        (502, {}, TransientError, ErrorCode.RUNTIME_UNAVAILABLE, None),
        (404, {}, PermanentError, ErrorCode.MODEL_NOT_FOUND, None),
        (400, {}, PermanentError, ErrorCode.INVALID_REQUEST, None),
    ],
)
def test_status_becomes_error(
    kind: str,
    status: int,
    headers: dict[str, str],
    error_class: type[Exception],
    code: ErrorCode,
    retry_after: float | None,
) -> None:
    rt = runtime(kind, answer(status, '{"error": "nope"}', **headers))
    with pytest.raises(error_class) as stream_error:
        list(rt.stream(CHAT, "m"))
    with pytest.raises(error_class) as embed_error:
        rt.embed(["a"], "m")
    for error in (stream_error.value, embed_error.value):
        assert isinstance(error, TransientError | PermanentError)
        assert error.code == code
        assert getattr(error, "retry_after_seconds", None) == retry_after


# -- OpenAI SSE --------------------------------------------------------------------------------

USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
# Without a usage chunk the adapter counts one token per streamed chunk (llama.cpp) and asks
# the server's tokenizer for the prompt (this mock answers that with SSE, so 0).
COUNTED = Usage(prompt_tokens=0, completion_tokens=1, total_tokens=1)


@pytest.mark.parametrize(
    ("body", "events"),
    [
        pytest.param(
            sse(
                {"choices": [{"delta": {"role": "assistant"}, "finish_reason": None}]},
                chat_chunk("Hi"),
                chat_chunk(" there"),
                chat_chunk(finish="stop"),
                {"choices": [], "usage": USAGE},
                "[DONE]",
            ),
            [StreamEvent("Hi"), StreamEvent(" there"), StreamEvent("", "stop", Usage(**USAGE))],
            id="chat-with-usage-chunk",
        ),
        pytest.param(
            b": ping\r\n\r\n" + sse(chat_chunk("Hi", finish="length"), "[DONE]"),
            [StreamEvent("Hi"), StreamEvent("", "length", COUNTED)],
            id="comment-and-no-usage",
        ),
        pytest.param(
            sse(chat_chunk("Hi"), chat_chunk(finish="stop")),
            [StreamEvent("Hi"), StreamEvent("", "stop", COUNTED)],
            id="finish-without-done",
        ),
        pytest.param(
            sse(chat_chunk("Hi"), "[DONE]"),
            [StreamEvent("Hi"), StreamEvent("", "stop", COUNTED)],
            id="done-without-finish",
        ),
    ],
)
def test_openai_sse_parsing(body: bytes, events: list[StreamEvent]) -> None:
    assert list(runtime("openai", answer(200, body)).stream(CHAT, "m")) == events


def test_openai_completion_text_chunks() -> None:
    body = sse(
        {"choices": [{"text": "upon", "finish_reason": None}]},
        {"choices": [{"text": "", "finish_reason": "stop"}], "usage": USAGE},
        "[DONE]",
    )
    events = list(runtime("openai", answer(200, body)).stream(COMPLETION, "m"))
    assert events == [StreamEvent("upon"), StreamEvent("", "stop", Usage(**USAGE))]


@pytest.mark.parametrize(
    ("body", "error_class", "code"),
    [
        (sse(chat_chunk("Hi")), TransientError, ErrorCode.RUNTIME_UNAVAILABLE),
        (
            sse(chat_chunk("Hi"), {"error": {"message": "boom"}}),
            TransientError,
            ErrorCode.RUNTIME_ERROR,
        ),
        (sse({"error": json.loads(OPENAI_CONTEXT)["error"]}), PermanentError, "context"),
        (b"data: <html>\r\n\r\n", PermanentError, ErrorCode.RUNTIME_ERROR),
    ],
    ids=["dropped", "error-event", "context-error-event", "not-json"],
)
def test_openai_stream_failures(body: bytes, error_class: type[Exception], code: str) -> None:
    with pytest.raises(error_class) as caught:
        list(runtime("openai", answer(200, body)).stream(CHAT, "m"))
    assert isinstance(caught.value, TransientError | PermanentError)
    assert caught.value.code == {"context": ErrorCode.CONTEXT_LENGTH_EXCEEDED}.get(code, code)


# -- Ollama NDJSON -----------------------------------------------------------------------------

FINAL = {"done": True, "done_reason": "length", "prompt_eval_count": 4, "eval_count": 2}


@pytest.mark.parametrize(
    ("request_", "lines", "events"),
    [
        (
            CHAT,
            [
                {"message": {"role": "assistant", "content": "Hi"}, "done": False},
                {"message": {"role": "assistant", "content": "!"}, "done": False},
                {"message": {"role": "assistant", "content": ""}} | FINAL,
            ],
            [
                StreamEvent("Hi"),
                StreamEvent("!"),
                StreamEvent(
                    "", "length", Usage(prompt_tokens=4, completion_tokens=2, total_tokens=6)
                ),
            ],
        ),
        (
            COMPLETION,
            [{"response": "upon", "done": False}, {"response": "", "done": True}],
            [StreamEvent("upon"), StreamEvent("", "stop", None)],
        ),
    ],
    ids=["chat", "generate-without-counts"],
)
def test_ollama_ndjson_parsing(
    request_: JobRequest, lines: list[object], events: list[StreamEvent]
) -> None:
    assert list(runtime("ollama", answer(200, ndjson(*lines))).stream(request_, "m")) == events


@pytest.mark.parametrize(
    ("lines", "error_class", "code"),
    [
        ([{"response": "a", "done": False}], TransientError, ErrorCode.RUNTIME_UNAVAILABLE),
        ([{"response": "a", "done": False}, {"error": "boom"}], TransientError, "runtime_error"),
        ([{"error": 'model "x" not found'}], PermanentError, ErrorCode.MODEL_NOT_FOUND),
        ([{"error": "exceeds the context length"}], PermanentError, "context_length_exceeded"),
    ],
    ids=["dropped", "error-line-under-200", "model-error-line", "context-error-line"],
)
def test_ollama_stream_failures(
    lines: list[object], error_class: type[Exception], code: str
) -> None:
    with pytest.raises(error_class) as caught:
        list(runtime("ollama", answer(200, ndjson(*lines))).stream(COMPLETION, "m"))
    assert isinstance(caught.value, TransientError | PermanentError)
    assert caught.value.code == code


# -- request bodies ----------------------------------------------------------------------------


def capture(kind: str, request_: JobRequest, reply: bytes) -> tuple[str, dict[str, object]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=reply)

    list(runtime(kind, handler).stream(request_, "the-model"))
    return seen[0].url.path, json.loads(seen[0].content)


def test_openai_request_body_carries_only_set_params() -> None:
    request_ = JobRequest(kind="chat", messages=CHAT.messages, max_tokens=5, top_k=3, stop="END")
    path, body = capture("openai", request_, sse("[DONE]"))
    assert path == "/v1/chat/completions"
    assert body == {
        "messages": [{"role": "user", "content": "say hi"}],
        "max_tokens": 5,
        "top_k": 3,
        "stop": ["END"],
        "model": "the-model",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    path, body = capture("openai", COMPLETION, sse("[DONE]"))
    assert (path, body["prompt"]) == ("/v1/completions", "Once upon a time")


def test_ollama_request_body_maps_options() -> None:
    request_ = JobRequest(kind="completion", prompt="p", max_tokens=7, temperature=0.5, seed=1)
    path, body = capture("ollama", request_, ndjson({"done": True}))
    assert path == "/api/generate"
    assert body == {
        "prompt": "p",
        "raw": False,
        "model": "the-model",
        "stream": True,
        "options": {"num_predict": 7, "temperature": 0.5, "seed": 1},
    }
    path, body = capture("ollama", CHAT, ndjson({"done": True}))
    assert path == "/api/chat" and "options" not in body


@pytest.mark.parametrize("kind", KINDS)
def test_embedding_job_cannot_stream(kind: str) -> None:
    embedding_job = JobRequest(kind="embedding", input=["x"])
    with pytest.raises(PermanentError) as caught:
        list(runtime(kind, answer(200)).stream(embedding_job, "m"))
    assert caught.value.code == ErrorCode.INVALID_REQUEST


# -- embeddings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "vectors"),
    [
        ([{"index": 0, "embedding": [[1.0, 2.0], [3.0, 6.0]]}], [[2.0, 4.0]]),
        ([{"index": 0, "embedding": [1, 2.5]}], [[1.0, 2.5]]),
        (
            [{"index": 1, "embedding": [[0.0, 0.0]]}, {"index": 0, "embedding": [5.0, 5.0]}],
            [[5.0, 5.0], [0.0, 0.0]],
        ),
    ],
    ids=["per-token-mean-pooled", "flat", "sorted-by-index"],
)
def test_openai_embeddings(data: list[object], vectors: list[list[float]]) -> None:
    body = json.dumps({"data": data, "usage": {"prompt_tokens": 4, "total_tokens": 4}})
    result = runtime("openai", answer(200, body)).embed(["a"] * len(vectors), "m")
    assert result.vectors == vectors
    assert result.usage == Usage(prompt_tokens=4, total_tokens=4)


@pytest.mark.parametrize(
    "data",
    [[], [{"index": 0, "embedding": [[1.0], [1.0, 2.0]]}], [{"index": 0, "embedding": "x"}]],
    ids=["missing", "ragged", "not-a-vector"],
)
def test_openai_bad_embeddings_are_permanent(data: list[object]) -> None:
    with pytest.raises(PermanentError) as caught:
        runtime("openai", answer(200, json.dumps({"data": data}))).embed(["a"], "m")
    assert caught.value.code == ErrorCode.RUNTIME_ERROR


def test_ollama_embeddings() -> None:
    body = json.dumps({"embeddings": [[0.1, 0.2], [0.3, 0.4]], "prompt_eval_count": 6})
    result = runtime("ollama", answer(200, body)).embed(["a", "b"], "m")
    assert result.vectors == [[0.1, 0.2], [0.3, 0.4]]
    assert result.usage == Usage(prompt_tokens=6, total_tokens=6)
    with pytest.raises(PermanentError):
        runtime("ollama", answer(200, body)).embed(["only one"], "m")


# -- transport failures, closing, health, secrets ---------------------------------------------


class ChunkStream(httpx.SyncByteStream):
    """A response body that yields chunks, may then fail, and records being closed."""

    def __init__(self, chunks: list[bytes], error: Exception | None = None) -> None:
        self.chunks, self.error, self.closed = chunks, error, False

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.closed = True


def streaming(body: ChunkStream) -> Handler:
    return lambda request: httpx.Response(200, stream=body)


def raising(error: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return handler


def first_chunks(kind: str) -> list[bytes]:
    if kind == "openai":
        return [sse(chat_chunk("a")), sse(chat_chunk("b"))]
    return [ndjson({"message": {"content": "a"}, "done": False})] * 2


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), httpx.ReadTimeout("slow")],
)
def test_transport_errors_before_response_are_transient(kind: str, error: Exception) -> None:
    with pytest.raises(TransientError) as caught:
        list(runtime(kind, raising(error)).stream(CHAT, "m"))
    assert caught.value.code == ErrorCode.RUNTIME_UNAVAILABLE
    assert caught.value.__cause__ is error


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("error", [httpx.RemoteProtocolError("peer closed"), httpx.ReadError("x")])
def test_transport_errors_mid_stream_are_transient(kind: str, error: Exception) -> None:
    events = runtime(kind, streaming(ChunkStream(first_chunks(kind), error))).stream(CHAT, "m")
    assert next(events).delta == "a"
    with pytest.raises(TransientError):
        list(events)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["close", "garbage-collect"])
def test_closing_the_stream_closes_the_response(kind: str, how: str) -> None:
    body = ChunkStream(first_chunks(kind))
    events = runtime(kind, streaming(body)).stream(CHAT, "m")
    assert next(events).delta == "a"
    assert not body.closed
    if how == "close":
        events.close()  # type: ignore[attr-defined]
    else:
        del events
        gc.collect()
    assert body.closed


@pytest.mark.parametrize(
    ("kind", "path", "body", "detail"),
    [
        ("openai", "/v1/models", {"data": [{"id": "gemma3-270m"}]}, "gemma3-270m"),
        ("ollama", "/api/tags", {"models": [{"name": "llama3:latest"}]}, "llama3:latest"),
    ],
)
def test_health(kind: str, path: str, body: dict[str, object], detail: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200 if request.url.path == path else 404, json=body)

    health = runtime(kind, handler).health()
    assert health.ok and detail in health.detail
    assert not runtime(kind, answer(503, "loading")).health().ok
    down = runtime(kind, raising(httpx.ConnectError("refused"))).health()
    assert not down.ok and "unreachable" in down.detail


def test_messages_never_carry_credentials() -> None:
    body = '{"error": {"message": "Incorrect API key provided: sk-secret1234567890"}}'
    rt = runtime("openai", answer(401, body), base_url="http://user:hunter2@runtime.test/?key=k1")
    with pytest.raises(PermanentError) as caught:
        list(rt.stream(CHAT, "m"))
    assert caught.value.code == ErrorCode.UNAUTHORIZED
    for secret in ("sk-secret", "hunter2", "key=k1"):
        assert secret not in caught.value.message
    assert "API key" in caught.value.message


def test_build_runtime() -> None:
    client = httpx.Client(transport=httpx.MockTransport(answer()))
    assert isinstance(build_runtime("openai", client), OpenAIRuntime)
    assert isinstance(build_runtime("ollama", client), OllamaRuntime)
    with pytest.raises(ValueError, match="openai, ollama"):
        build_runtime("vllm", client)
