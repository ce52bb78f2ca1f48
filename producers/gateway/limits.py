"""The gateway's limits: a token bucket per key, a body size cap, a queued-jobs cap.

The counters behind the first and last are in ``quotas``; this module applies them to requests.

All three numbers are settings: ``rate_limit_per_second``/``rate_limit_burst``,
``max_body_bytes`` and ``max_queued_per_tenant``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated

from fastapi import Depends, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from producers.gateway.auth import current_principal
from producers.gateway.errors import PayloadTooLarge, error_response
from producers.gateway.principal import Principal
from producers.gateway.state import gateway_of
from schemas import RateLimited


async def enforce_rate_limit(
    request: Request, principal: Annotated[Principal, Depends(current_principal)]
) -> Principal:
    """FastAPI dependency: the caller, after taking a token from its bucket (429 if empty)."""
    decision = await gateway_of(request).limiter.take(principal.rate_key)
    if not decision.allowed:
        raise RateLimited(
            f"too many requests for this API key; try again in {decision.retry_after_seconds:.2f}s",
            retry_after_seconds=decision.retry_after_seconds,
        )
    return principal


class BodySizeLimit:
    """ASGI middleware: refuse a body over ``max_bytes`` (413) before anything parses it.

    A declared ``Content-Length`` is checked at once; a chunked body is counted as it arrives,
    so a client cannot get around the limit by not declaring the length.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, streamed: Collection[str] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Paths whose route reads the body as it streams and enforces its own, larger limit
        # (``POST /v1/files``): passed through unbuffered.
        self.streamed = frozenset(streamed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in self.streamed:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if length is None and not chunked:
            await self.app(scope, receive, send)
            return
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = PayloadTooLarge(
            f"request body is larger than this gateway's limit of {self.max_bytes} bytes",
            details=[{"field": "body", "limit_bytes": self.max_bytes}],
        )
        response = error_response(error)
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over the buffered body once, then the real channel."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
