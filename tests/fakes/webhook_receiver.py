"""A real webhook receiver on 127.0.0.1: records every request and answers from a script.

In a test::

    with WebhookReceiver() as receiver:
        receiver.replies.append(Reply(500))      # the first request gets a 500, then 200s
        ...                                       # point a webhook at receiver.url()
        [hit] = receiver.wait_for(1)
        hit.verify(secret)                        # Standard Webhooks check, by the library

``WebhookReceiver(port=free_port())`` may be built long before ``start()``: until then the
port refuses connections (a receiver that is down). ``WebhookReceiver(tls=context)`` serves
HTTPS with a server ``ssl.SSLContext`` and records the name each client asked for (SNI).
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from standardwebhooks import Webhook

from tests.support.ports import free_port
from tests.support.waiting import eventually


@dataclass(frozen=True)
class Reply:
    """How to answer one request."""

    status: int = 200
    delay_seconds: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    answered: int
    sni: str | None = None

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def verify(self, secret: str) -> Any:
        """The payload, if the signature checks out with ``secret`` (raises otherwise)."""
        return Webhook(secret).verify(self.body, self.headers)


class WebhookReceiver:
    """A threaded HTTP server; ``replies`` is consumed one per request, then 200s."""

    def __init__(self, port: int | None = None, *, tls: ssl.SSLContext | None = None) -> None:
        self.port = port or free_port()
        self.tls = tls
        self.replies: deque[Reply] = deque()
        self.default = Reply()
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str = "/hook") -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def start(self) -> Self:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._handle(self)

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        # HTTPServer sets SO_REUSEADDR, so a receiver can come back on the same port.
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.tls is not None:
            self.tls.sni_callback = _remember_sni
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._lock:
            reply = self.replies.popleft() if self.replies else self.default
            self.received.append(
                Received(
                    path=handler.path,
                    headers={k.lower(): v for k, v in handler.headers.items()},
                    body=body,
                    at=time.time(),
                    answered=reply.status,
                    sni=getattr(handler.connection, "genq_sni", None),
                )
            )
        if reply.delay_seconds:
            time.sleep(reply.delay_seconds)
        try:
            handler.send_response(reply.status)
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.send_header("content-length", str(len(reply.body)))
            handler.end_headers()
            handler.wfile.write(reply.body)
        except OSError:
            pass  # the sender gave up (timeout): exactly what a slow receiver test wants

    def hits(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if path is None or r.path == path]

    def wait_for(
        self, count: int, timeout: float = 20.0, path: str | None = None
    ) -> list[Received]:
        """Block until at least ``count`` requests arrived; returns them all."""
        if not eventually(lambda: len(self.hits(path)) >= count, timeout=timeout):
            got = len(self.hits(path))
            raise AssertionError(f"receiver got {got} of {count} requests in {timeout} s")
        return self.hits(path)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _remember_sni(sock: ssl.SSLSocket, name: str | None, _context: ssl.SSLContext) -> None:
    sock.genq_sni = name  # type: ignore[attr-defined]
