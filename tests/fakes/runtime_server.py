"""A protocol-faithful fake LLM runtime: a real HTTP server on loopback.

It speaks OpenAI SSE (``/v1/...``) and Ollama NDJSON (``/api/...``) and produces, on demand, the
faults a real runtime cannot: 503/429 with Retry-After, a connection dropped mid-stream, an error
line under HTTP 200, slow tokens, unknown models. It counts clients that hang up mid-stream and
stops generating for them, which is what cancellation relies on.

In a test::

    with FakeRuntime() as fake:
        fake.fail_next.append(Fault.status(503, retry_after=1))
        ...  # point an httpx.Client at fake.url

As a process: ``python -m tests.fakes.runtime_server --port 0 --mode instant`` prints
``fake runtime listening on URL``; drive it with ``POST /_fake/config`` (the attribute names of
``FakeRuntime``; faults as JSON objects), ``GET /_fake/stats`` and ``POST /_fake/reset``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import random
import select
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

DEFAULT_TOKENS = ("Hello", ",", " world", "!")
DEFAULT_MODELS = frozenset({"fake-model", "gemma3-270m"})
MODES: dict[str, dict[str, Any]] = {
    "instant": {},
    "slow": {"token_delay_seconds": 0.05},
    "jobs": {"job_delay_seconds": (0.2, 0.5)},
}
CONFIG_FIELDS = (
    "tokens",
    "token_delay_seconds",
    "job_delay_seconds",
    "known_models",
    "fail_next",
    "embedding_dim",
    "per_token_embeddings",
    "stream_usage",
    "context_tokens",
    "llama_stream_errors",
    "true_parallelism",
    "slots",
    "record_requests",
)
COUNTERS = (
    "requests_seen",
    "job_requests_seen",
    "connections",
    "disconnects",
    "streams_completed",
    "streams_active",
    "tokens_sent",
    "max_in_flight",
    "waited_inside",
)

FaultKind = Literal["status", "drop_after", "error_line"]


@dataclass(frozen=True)
class FaultSpec:
    """One fault for one upcoming request (whose path starts with ``path``, if given)."""

    kind: FaultKind
    status: int = 503
    retry_after: float | None = None
    n_tokens: int = 0
    message: str = ""
    path: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``POST /_fake/config`` accepts in ``fail_next``."""
        return asdict(self)


class Fault:
    """Constructors for ``FakeRuntime.fail_next``."""

    @staticmethod
    def status(
        code: int, *, retry_after: float | None = None, message: str = "", path: str | None = None
    ) -> FaultSpec:
        """Answer HTTP ``code`` with the dialect's error body (and Retry-After if given)."""
        return FaultSpec("status", status=code, retry_after=retry_after, message=message, path=path)

    @staticmethod
    def drop_after(n_tokens: int, *, path: str | None = None) -> FaultSpec:
        """Stream ``n_tokens`` tokens, then close the connection without finishing."""
        return FaultSpec("drop_after", n_tokens=n_tokens, path=path)

    @staticmethod
    def error_line(
        message: str = "boom", *, after_tokens: int = 1, path: str | None = None
    ) -> FaultSpec:
        """Stream ``after_tokens`` tokens, then an error object under HTTP 200, then end."""
        return FaultSpec("error_line", n_tokens=after_tokens, message=message, path=path)


def word_vector(word: str, dim: int) -> list[float]:
    """A deterministic vector in [0, 1] for a word (``dim`` at most 64)."""
    digest = hashlib.blake2b(word.encode(), digest_size=max(1, min(dim, 64))).digest()
    return [round(b / 255, 6) for b in digest]


def mean_vector(vectors: list[list[float]]) -> list[float]:
    """The element-wise mean of equal-length vectors."""
    return [sum(column) / len(vectors) for column in zip(*vectors, strict=True)]


class FakeRuntime:
    """The fake runtime: its controls (plain attributes, changeable while it serves) and stats."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **config: Any) -> None:
        self.host, self.port = host, port
        self.lock = threading.Lock()
        self._server: _Server | None = None
        self.tokens: list[str] = list(DEFAULT_TOKENS)
        self.token_delay_seconds: float = 0.0
        self.job_delay_seconds: float | tuple[float, float] = 0.0
        self.known_models: set[str] = set(DEFAULT_MODELS)
        self.fail_next: list[FaultSpec] = []
        self.embedding_dim = 8
        self.per_token_embeddings = True  # like llama-cpp-python's /v1/embeddings for Gemma 3
        # OpenAI and vLLM send a usage chunk when asked (stream_options.include_usage);
        # llama-cpp-python never does, and counts prompt tokens at /extras/tokenize/count.
        self.stream_usage = True
        # A prompt of at least this many tokens (words) is refused the way llama-cpp-python
        # refuses one that does not fit its context window (400, context_length_exceeded).
        self.context_tokens: int | None = None
        # llama-cpp-python 0.3 fails a streamed request only once its stream has begun: it
        # answers 200 and ends the body empty (the error goes to its log). True mimics that.
        self.llama_stream_errors = False
        # A runtime that degrades beyond a true parallelism of N: while more than N streams are
        # active, each token takes token_delay_seconds * active / N, so aggregate throughput
        # saturates at N streams and each request's token rate falls. None: no such limit.
        self.true_parallelism: int | None = None
        # How many generations/embeddings it runs at once, like a runtime's parallel setting:
        # one arriving beyond that waits inside the runtime (counted in ``waited_inside``)
        # until one ends. None: no limit. ``max_in_flight`` is the most it ever had at once.
        self.slots: int | None = None
        self.in_flight = self.max_in_flight = self.waited_inside = 0
        self.free_slot = threading.Condition(self.lock)
        # Keep each job request's arrival and end (unix times "t", "end"), model and prompt in
        # ``request_log``.
        self.record_requests = False
        self.request_log: list[dict[str, Any]] = []
        self.requests_seen = self.disconnects = self.tokens_sent = self.connections = 0
        self.job_requests_seen = 0  # POSTs: generations and embeddings, not health probes
        self.streams_completed = self.streams_active = 0
        self.requests_by_path: Counter[str] = Counter()
        self.configure(**config)

    def start(self) -> FakeRuntime:
        """Bind and serve in a daemon thread; ``url`` is valid afterwards."""
        self._server = _Server((self.host, self.port), self)
        self.port = int(self._server.server_address[1])
        serve = functools.partial(self._server.serve_forever, poll_interval=0.02)  # quick stop()
        threading.Thread(target=serve, name="fake-runtime", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving: close the listening socket and every open connection."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.drop_connections()
            self._server = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> FakeRuntime:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def configure(self, **config: Any) -> None:
        """Set several controls at once; what ``POST /_fake/config`` calls with its JSON."""
        unknown = set(config) - set(CONFIG_FIELDS)
        if unknown:
            raise ValueError(f"unknown fake runtime settings {sorted(unknown)}")
        if "fail_next" in config:
            config["fail_next"] = [_fault(f) for f in config["fail_next"]]
        if isinstance(config.get("job_delay_seconds"), list):
            config["job_delay_seconds"] = tuple(config["job_delay_seconds"])
        if "known_models" in config:
            config["known_models"] = set(config["known_models"])
        with self.lock:
            for name, value in config.items():
                setattr(self, name, value)

    def reset(self) -> None:
        """Zero the counters and drop pending faults."""
        with self.lock:
            for name in COUNTERS:
                setattr(self, name, 0)
            self.requests_by_path.clear()
            self.request_log = []
            self.fail_next = []

    def stats(self) -> dict[str, Any]:
        """The counters, as ``GET /_fake/stats`` returns them."""
        with self.lock:
            counters: dict[str, Any] = {name: getattr(self, name) for name in COUNTERS}
            return counters | {
                "requests_by_path": dict(self.requests_by_path),
                "in_flight": self.in_flight,
                "request_log": list(self.request_log),
            }

    def count(self, name: str, delta: int = 1) -> None:
        """Add to one of ``COUNTERS`` under the lock."""
        with self.lock:
            setattr(self, name, getattr(self, name) + delta)

    def wait_until(self, condition: Callable[[], bool], timeout_seconds: float = 5.0) -> bool:
        """Poll ``condition`` until it holds or the timeout passes; whether it held."""
        deadline = time.monotonic() + timeout_seconds
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def take_request(self, method: str, path: str) -> FaultSpec | None:
        """Count a runtime request and pop the first pending fault that applies to it: one
        naming its path, or one naming none for a job's request (a POST; a health probe's GET
        of the model list does not use up a fault meant for a generation)."""
        with self.lock:
            self.requests_seen += 1
            self.job_requests_seen += int(method == "POST")
            self.requests_by_path[path] += 1
            for i, fault in enumerate(self.fail_next):
                applies = path.startswith(fault.path) if fault.path else method == "POST"
                if applies:
                    return self.fail_next.pop(i)
        return None

    def token_delay(self) -> float:
        """Seconds before the next token: ``token_delay_seconds``, stretched by the streams
        active beyond ``true_parallelism``."""
        with self.lock:
            delay, limit = self.token_delay_seconds, self.true_parallelism
            active = self.streams_active
        return delay * max(1.0, active / limit) if limit else delay

    @contextlib.contextmanager
    def running(self, body: dict[str, Any]) -> Iterator[None]:
        """One job request in flight: waits for a slot when ``slots`` are all busy (as a
        runtime queues what it cannot run yet), and records the most in flight at once."""
        with self.lock:
            if self.slots is not None and self.in_flight >= self.slots:
                self.waited_inside += 1
                while self.slots is not None and self.in_flight >= self.slots:
                    self.free_slot.wait(0.5)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            entry: dict[str, Any] = {}
            if self.record_requests:
                entry = {"t": time.time(), "model": body.get("model"), "prompt": prompt_text(body)}
                self.request_log.append(entry)
        try:
            yield
        finally:
            with self.lock:
                self.in_flight -= 1
                if entry:
                    entry["end"] = time.time()
                self.free_slot.notify()

    def job_delay(self) -> float:
        """Seconds to wait before answering a generation or embedding request."""
        delay = self.job_delay_seconds
        return random.uniform(*delay) if isinstance(delay, tuple) else float(delay)

    def has_model(self, model: str) -> bool:
        """Whether ``model`` is served (Ollama's implicit ``:latest`` tag included)."""
        known = self.known_models
        bare = model.removesuffix(":latest")
        return model in known or bare in known or f"{bare}:latest" in known


def _fault(raw: FaultSpec | dict[str, Any]) -> FaultSpec:
    return raw if isinstance(raw, FaultSpec) else FaultSpec(**raw)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # a throughput benchmark opens many connections at once

    def __init__(self, address: tuple[str, int], fake: FakeRuntime) -> None:
        self.fake = fake
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Hang up on every client, as a runtime process that dies does (keep-alive ones too)."""
        with self.connections_lock:
            connections = list(self.open_connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up are expected; anything else is a bug in the fake worth a traceback."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def error_body(path: str, status: int, message: str) -> dict[str, Any]:
    """The JSON error body of a failed answer, in the dialect of ``path``."""
    if path.startswith("/api/"):
        return {"error": message}
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}


def unknown_model_body(path: str, model: str) -> dict[str, Any]:
    """The 404 body for a model the runtime does not serve (Ollama's or OpenAI's words)."""
    if path.startswith("/api/"):
        return {"error": f'model "{model}" not found, try pulling it first'}
    error = {"message": f"The model `{model}` does not exist", "code": "model_not_found"}
    return {"error": error | {"type": "invalid_request_error", "param": None}}


def prompt_text(body: dict[str, Any]) -> str:
    """The text a generation request asks about: its messages' contents, or its prompt."""
    messages = body.get("messages") or []
    return " ".join(str(m.get("content", "")) for m in messages) or str(body.get("prompt", ""))


def context_overflow_body(
    path: str, prompt_tokens: int, context_tokens: int, max_tokens: Any
) -> dict[str, Any]:
    """llama-cpp-python's 400 body for a prompt that does not fit the context window."""
    chat = path.endswith("/chat/completions")
    requested = prompt_tokens + (max_tokens or 0)
    if chat:
        message = (
            f"This model's maximum context length is {context_tokens} tokens. However, you "
            f"requested {requested} tokens ({prompt_tokens} in the messages, {max_tokens} in "
            "the completion). Please reduce the length of the messages or completion."
        )
    else:
        message = (
            f"This model's maximum context length is {context_tokens} tokens, however you "
            f"requested {requested} tokens ({prompt_tokens} in your prompt; {max_tokens} for "
            "the completion). Please reduce your prompt; or completion length."
        )
    error = {"message": message, "type": "invalid_request_error", "param": "messages"}
    return {"error": error | {"code": "context_length_exceeded"}}


class SseFrames:
    """OpenAI's streaming chunks as server-sent events."""

    content_type = "text/event-stream"

    def __init__(self, path: str, body: dict[str, Any], *, stream_usage: bool = True) -> None:
        self.chat = path.endswith("/chat/completions")
        asked = bool((body.get("stream_options") or {}).get("include_usage"))
        self.include_usage = stream_usage and asked
        self.head = {
            "id": f"cmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": int(time.time()),
            "model": body.get("model"),
        }

    def _event(self, **fields: Any) -> bytes:
        return b"data: " + json.dumps(self.head | fields).encode() + b"\r\n\r\n"

    def _choice(self, text: str, finish: str | None) -> dict[str, Any]:
        if self.chat:
            delta = {"content": text} if text or finish is None else {}
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}

    def prelude(self) -> bytes:
        """llama-cpp-python opens a chat stream with a role-only delta."""
        if not self.chat:
            return b""
        choice = {
            "index": 0,
            "delta": {"role": "assistant"},
            "logprobs": None,
            "finish_reason": None,
        }
        return self._event(choices=[choice])

    def token(self, text: str) -> bytes:
        return self._event(choices=[self._choice(text, None)])

    def error(self, message: str) -> bytes:
        error = {"message": message, "type": "server_error", "param": None, "code": 500}
        return b"data: " + json.dumps({"error": error}).encode() + b"\r\n\r\n"

    def finish(self, reason: str, prompt_tokens: int, completion_tokens: int) -> bytes:
        frames = self._event(choices=[self._choice("", reason)])
        if self.include_usage:
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }
            frames += self._event(choices=[], usage=usage)
        return frames + b"data: [DONE]\r\n\r\n"


class NdjsonFrames:
    """Ollama's streaming lines, one JSON object per line."""

    content_type = "application/x-ndjson"

    def __init__(self, path: str, body: dict[str, Any]) -> None:
        self.chat = path == "/api/chat"
        self.model = body.get("model")

    def _line(self, text: str, **fields: Any) -> bytes:
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        content = (
            {"message": {"role": "assistant", "content": text}} if self.chat else {"response": text}
        )
        return (
            json.dumps({"model": self.model, "created_at": now} | content | fields).encode() + b"\n"
        )

    def prelude(self) -> bytes:
        return b""

    def token(self, text: str) -> bytes:
        return self._line(text, done=False)

    def error(self, message: str) -> bytes:
        return json.dumps({"error": message}).encode() + b"\n"

    def finish(self, reason: str, prompt_tokens: int, completion_tokens: int) -> bytes:
        return self._line(
            "",
            done=True,
            done_reason=reason,
            total_duration=1_000_000,
            load_duration=0,
            prompt_eval_count=prompt_tokens,
            prompt_eval_duration=0,
            eval_count=completion_tokens,
            eval_duration=0,
        )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections are closed eventually
    server: _Server

    def setup(self) -> None:
        super().setup()
        self._head_bytes = b""
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake.count("connections")

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests read stats, not access logs."""

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, method: str) -> None:
        fake = self.server.fake
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.partition("?")[0]
        if path.startswith("/_fake/"):
            return self._control(method, path, raw)
        fault = fake.take_request(method, path)
        route = _ROUTES.get((method, path))
        if route is None:
            return self._json(404, {"error": f"404 page not found: {method} {path}"})
        try:
            body = json.loads(raw) if method == "POST" else {}
        except ValueError:
            return self._json(400, error_body(path, 400, "request body is not JSON"))
        if method != "POST":
            return self._answer(route, path, body, fault)
        with fake.running(body):
            if (delay := fake.job_delay()) > 0:
                time.sleep(delay)
            self._answer(route, path, body, fault)

    def _answer(
        self, route: _Route, path: str, body: dict[str, Any], fault: FaultSpec | None
    ) -> None:
        fake = self.server.fake
        if fault is not None and (fault.kind == "status" or route is not _Handler._generate):
            return self._answer_fault(path, fault)
        model = str(body.get("model") or "")
        if self.command == "POST" and not fake.has_model(model):
            return self._unknown_model(path, model)
        route(self, path, body, fault)

    # -- answers ----------------------------------------------------------------------------
    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self._head(status, "application/json", {"Content-Length": str(len(body))} | (headers or {}))
        self._write(body)

    def _head(self, status: int, content_type: str, headers: dict[str, str]) -> None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        lines = [f"HTTP/1.1 {status} {phrase}", f"Content-Type: {content_type}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode()

    def _write(self, data: bytes) -> bool:
        """Send pending headers plus ``data``; False when the client has gone."""
        data, self._head_bytes = self._head_bytes + data, b""
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True
            return False
        return True

    def _chunk(self, data: bytes) -> bool:
        return not data or self._write(_chunked(data))

    def _answer_fault(self, path: str, fault: FaultSpec) -> None:
        if fault.kind == "drop_after":  # nothing to stream: hang up without an answer
            self.close_connection = True
            return
        status = fault.status if fault.kind == "status" else 500
        message = fault.message or HTTPStatus(status).phrase
        headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
        self._json(status, error_body(path, status, message), headers)

    def _unknown_model(self, path: str, model: str) -> None:
        self._json(404, unknown_model_body(path, model))

    def _control(self, method: str, path: str, raw: bytes) -> None:
        fake = self.server.fake
        try:
            if (method, path) == ("GET", "/_fake/stats"):
                return self._json(200, fake.stats())
            if (method, path) == ("POST", "/_fake/reset"):
                fake.reset()
                return self._json(200, {"ok": True})
            if (method, path) == ("POST", "/_fake/config"):
                fake.configure(**json.loads(raw or b"{}"))
                return self._json(200, {"ok": True})
        except (TypeError, ValueError) as exc:
            return self._json(400, {"error": str(exc)})
        self._json(404, {"error": f"no fake control {method} {path}"})

    # -- routes -----------------------------------------------------------------------------
    def _models(self, path: str, body: dict[str, Any], fault: FaultSpec | None) -> None:
        names = sorted(self.server.fake.known_models)
        if path.startswith("/api/"):
            self._json(200, {"models": [{"name": n, "model": n, "size": 0} for n in names]})
        else:
            data = [{"id": n, "object": "model", "created": 0, "owned_by": "fake"} for n in names]
            self._json(200, {"object": "list", "data": data})

    def _count_tokens(self, path: str, body: dict[str, Any], fault: FaultSpec | None) -> None:
        self._json(200, {"count": len(str(body.get("input") or "").split())})

    def _embed(self, path: str, body: dict[str, Any], fault: FaultSpec | None) -> None:
        fake = self.server.fake
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else [str(text) for text in raw or []]
        per_token = [[word_vector(w, fake.embedding_dim) for w in t.split() or [t]] for t in inputs]
        n_tokens = sum(len(t.split()) for t in inputs)
        if path.startswith("/api/"):
            vectors = [mean_vector(v) for v in per_token]
            payload = {"model": body["model"], "embeddings": vectors, "prompt_eval_count": n_tokens}
        else:
            data = [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": v if fake.per_token_embeddings else mean_vector(v),
                }
                for i, v in enumerate(per_token)
            ]
            usage = {"prompt_tokens": n_tokens, "total_tokens": n_tokens}
            payload = {"object": "list", "data": data, "model": body["model"], "usage": usage}
        self._json(200, payload)

    def _generate(self, path: str, body: dict[str, Any], fault: FaultSpec | None) -> None:
        fake = self.server.fake
        openai = path.startswith("/v1/")
        frames = (
            SseFrames(path, body, stream_usage=fake.stream_usage)
            if openai
            else NdjsonFrames(path, body)
        )
        prompt_tokens = len(prompt_text(body).split())
        limit = body.get("max_tokens") if openai else (body.get("options") or {}).get("num_predict")
        if openai and fake.context_tokens is not None and prompt_tokens >= fake.context_tokens:
            if fake.llama_stream_errors and body.get("stream"):
                self._head(200, frames.content_type, {"Transfer-Encoding": "chunked"})
                self._write(b"0\r\n\r\n")
                return None
            body = context_overflow_body(path, prompt_tokens, fake.context_tokens, limit)
            return self._json(400, body)
        tokens, finish = list(fake.tokens), "stop"
        if isinstance(limit, int) and 0 <= limit < len(tokens):
            tokens, finish = tokens[:limit], "length"
        self._head(200, frames.content_type, {"Transfer-Encoding": "chunked"})
        fake.count("streams_active")
        try:
            self._stream(frames, tokens, fault, finish, prompt_tokens)
        finally:
            fake.count("streams_active", -1)

    def _stream(
        self,
        frames: SseFrames | NdjsonFrames,
        tokens: list[str],
        fault: FaultSpec | None,
        finish: str,
        prompt_tokens: int,
    ) -> None:
        fake = self.server.fake
        if fault is None and fake.token_delay_seconds <= 0:
            # Nothing to wait for between tokens: the whole answer goes out in one write, as
            # from a server whose answer is ready before it starts sending.
            whole = [frames.prelude(), *map(frames.token, tokens)]
            whole.append(frames.finish(finish, prompt_tokens, len(tokens)))
            if self._write(b"".join(map(_chunked, whole)) + b"0\r\n\r\n"):
                fake.count("tokens_sent", len(tokens))
                fake.count("streams_completed")
            else:
                fake.count("disconnects")
            return
        cut = fault.n_tokens if fault is not None else None
        sent = self._chunk(frames.prelude())
        for i, token in enumerate(tokens):
            if not sent or i == cut:
                break
            sent = self._pause(fake.token_delay()) and self._chunk(frames.token(token))
            fake.count("tokens_sent", int(sent))
        if not sent:
            fake.count("disconnects")
        elif fault is not None and fault.kind == "error_line":
            if self._chunk(frames.error(fault.message)):
                self._write(b"0\r\n\r\n")
        elif fault is not None:  # drop_after: end the connection mid-body, no terminating chunk
            self.close_connection = True
        elif self._chunk(frames.finish(finish, prompt_tokens, len(tokens))) and self._write(
            b"0\r\n\r\n"
        ):
            fake.count("streams_completed")
        else:
            fake.count("disconnects")

    def _pause(self, seconds: float) -> bool:
        """Sleep between tokens, returning False as soon as the client hangs up."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.connection], [], [], left)
            if not readable:
                continue
            try:
                if not self.connection.recv(1, socket.MSG_PEEK):
                    return False  # orderly close by the client
            except OSError:
                return False
            time.sleep(max(0.0, deadline - time.monotonic()))  # bytes waiting: not a hang-up
        return True


def _chunked(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked HTTP body (nothing for no data)."""
    return b"%x\r\n%b\r\n" % (len(data), data) if data else b""


_Route = Callable[[_Handler, str, dict[str, Any], FaultSpec | None], None]
_ROUTES: dict[tuple[str, str], _Route] = {
    ("GET", "/v1/models"): _Handler._models,
    ("GET", "/api/tags"): _Handler._models,
    ("POST", "/v1/chat/completions"): _Handler._generate,
    ("POST", "/v1/completions"): _Handler._generate,
    ("POST", "/api/chat"): _Handler._generate,
    ("POST", "/api/generate"): _Handler._generate,
    ("POST", "/v1/embeddings"): _Handler._embed,
    ("POST", "/api/embed"): _Handler._embed,
    ("POST", "/extras/tokenize/count"): _Handler._count_tokens,
}


def main(argv: list[str] | None = None) -> None:
    """Serve a fake runtime until SIGTERM or Ctrl-C; prints the URL once listening."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--mode", choices=sorted(MODES), default="instant")
    parser.add_argument("--models", help="comma-separated model names the fake serves")
    args = parser.parse_args(argv)
    config = dict(MODES[args.mode])
    if args.models:
        config["known_models"] = args.models.split(",")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    fake = FakeRuntime(args.host, args.port, **config).start()
    print(f"fake runtime listening on {fake.url}", flush=True)
    try:
        while not stopping.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
