"""The runtime as an ``httpx.MockTransport``: scripted answers for in-process tests, no sockets.

Each generation or embedding request takes the next answer from ``script`` (then the default:
the whole token list). The frames and error bodies are the fake runtime server's
(``tests.fakes.runtime_server``), whose shapes the runtime contract suite checks against the
real llama.cpp server. In a test::

    runtime = MockRuntime()
    runtime.script.append(Status(503, retry_after=2))
    runtime.script.append(Stream(drop_after=2))
    runtime.on_token = lambda n: ...      # called before the n-th token (0-based) is sent
    http = runtime.client()               # give it to build_runtime("openai", http)
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.fakes.runtime_server import (
    DEFAULT_MODELS,
    DEFAULT_TOKENS,
    SseFrames,
    error_body,
    unknown_model_body,
    word_vector,
)

BASE_URL = "http://runtime.test"
GENERATION_PATHS = ("/v1/chat/completions", "/v1/completions")


@dataclass(frozen=True)
class Stream:
    """A 200 stream of ``tokens`` (default: the runtime's), ``pace_seconds`` apart; cut off
    (connection lost) before token ``drop_after``, or ended by an error object under 200
    before token ``error_after`` when ``error`` is set."""

    tokens: tuple[str, ...] | None = None
    pace_seconds: float = 0.0
    drop_after: int | None = None
    error: str | None = None
    error_after: int = 1


@dataclass(frozen=True)
class Status:
    """A failed answer: HTTP ``code`` with the dialect's error body (and Retry-After)."""

    code: int
    retry_after: float | None = None
    message: str = ""


@dataclass(frozen=True)
class Raise:
    """No answer: httpx raises ``error`` (a timeout, a refused connection)."""

    error: type[httpx.TransportError] = httpx.ReadTimeout


Answer = Stream | Status | Raise


class BodyStream(httpx.SyncByteStream):
    """A streamed body that knows how far it got and whether the client closed it."""

    def __init__(self, frames: Iterator[bytes]) -> None:
        self._frames = frames
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield from self._frames

    def close(self) -> None:
        self.closed = True
        self._frames.close()  # type: ignore[attr-defined]


@dataclass
class MockRuntime:
    """An OpenAI-compatible runtime answering from a script; see the module docstring."""

    tokens: tuple[str, ...] = DEFAULT_TOKENS
    known_models: frozenset[str] = DEFAULT_MODELS
    script: deque[Answer] = field(default_factory=deque)
    on_token: Callable[[int], None] | None = None
    requests: list[httpx.Request] = field(default_factory=list)
    streams: list[BodyStream] = field(default_factory=list)
    tokens_sent: int = 0

    def client(self, **options: Any) -> httpx.Client:
        """An httpx client whose every request this runtime answers."""
        return httpx.Client(
            transport=httpx.MockTransport(self.handle), base_url=BASE_URL, **options
        )

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        body: dict[str, Any] = json.loads(request.content) if request.content else {}
        if request.method == "GET" and path == "/v1/models":
            data = [{"id": name, "object": "model"} for name in sorted(self.known_models)]
            return httpx.Response(200, json={"object": "list", "data": data})
        answer = self.script.popleft() if self.script else Stream()
        if isinstance(answer, Raise):
            raise answer.error("scripted", request=request)
        if isinstance(answer, Status):
            headers = (
                {} if answer.retry_after is None else {"Retry-After": f"{answer.retry_after:g}"}
            )
            message = answer.message or f"scripted {answer.code}"
            return httpx.Response(
                answer.code, json=error_body(path, answer.code, message), headers=headers
            )
        if str(body.get("model")) not in self.known_models:
            return httpx.Response(404, json=unknown_model_body(path, str(body.get("model"))))
        if path == "/v1/embeddings":
            return self._embeddings(body)
        if path in GENERATION_PATHS:
            return self._stream(path, body, answer)
        raise AssertionError(f"the mock runtime has no route {request.method} {path}")

    def _embeddings(self, body: dict[str, Any]) -> httpx.Response:
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else [str(text) for text in raw or []]
        data = [
            {"object": "embedding", "index": i, "embedding": [word_vector(w, 8) for w in t.split()]}
            for i, t in enumerate(inputs)
        ]
        n_tokens = sum(len(t.split()) for t in inputs)
        usage = {"prompt_tokens": n_tokens, "total_tokens": n_tokens}
        return httpx.Response(200, json={"object": "list", "data": data, "usage": usage})

    def _stream(self, path: str, body: dict[str, Any], answer: Stream) -> httpx.Response:
        limit = body.get("max_tokens")
        stream = BodyStream(self._frames(SseFrames(path, body), answer, limit))
        self.streams.append(stream)
        return httpx.Response(200, headers={"Content-Type": SseFrames.content_type}, stream=stream)

    def _frames(self, frames: SseFrames, answer: Stream, limit: Any) -> Iterator[bytes]:
        tokens = list(answer.tokens if answer.tokens is not None else self.tokens)
        finish = "stop"
        if isinstance(limit, int) and limit < len(tokens):
            tokens, finish = tokens[:limit], "length"
        yield frames.prelude()
        for i, token in enumerate(tokens):
            if i == answer.drop_after:
                raise httpx.RemoteProtocolError("peer closed connection mid-body (scripted)")
            if answer.error is not None and i == answer.error_after:
                yield frames.error(answer.error)
                return
            if self.on_token is not None:
                self.on_token(i)
            if answer.pace_seconds:
                time.sleep(answer.pace_seconds)  # pacing the runtime, not waiting for a test
            self.tokens_sent += 1
            yield frames.token(token)
        yield frames.finish(finish, 3, len(tokens))
