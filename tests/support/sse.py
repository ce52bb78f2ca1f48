"""Reading a server-sent event stream as it arrives, keep-alive comments included (httpx-sse
drops comments, and a test of keep-alives needs to see them)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class SseItem:
    """One event, or one comment line (``event`` None), with the monotonic time it arrived."""

    event: str | None
    data: str
    id: str | None
    at: float

    @property
    def comment(self) -> bool:
        return self.event is None

    def json(self) -> dict[str, Any]:
        value = json.loads(self.data)
        assert isinstance(value, dict), self.data
        return value


def sse_items(response: httpx.Response) -> Iterator[SseItem]:
    """The stream's events and comments in order (the SSE line format, WHATWG HTML 9.2.6)."""
    fields: dict[str, str] = {}
    data: list[str] = []
    for line in response.iter_lines():
        if line.startswith(":"):
            yield SseItem(None, line[1:].strip(), None, time.monotonic())
        elif line == "":
            if data or fields:
                event = fields.get("event", "message")
                yield SseItem(event, "\n".join(data), fields.get("id"), time.monotonic())
            fields, data = {}, []
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            else:
                fields[name] = value


def read_job_stream(
    api: httpx.Client, job_id: str, *, read_timeout: float = 30.0
) -> tuple[int, list[SseItem]]:
    """``GET /v1/jobs/{id}/stream`` read to its ``end`` or ``error`` event (or its close):
    the status code and everything received."""
    seen: list[SseItem] = []
    timeout = httpx.Timeout(10.0, read=read_timeout)
    with api.stream("GET", f"/v1/jobs/{job_id}/stream", timeout=timeout) as response:
        if response.status_code != 200:
            response.read()
            return response.status_code, seen
        for item in sse_items(response):
            seen.append(item)
            if item.event in ("end", "error"):
                break
    return 200, seen


def text_of(items: list[SseItem]) -> str:
    """The generated text: the deltas joined (a ``reset`` drops what came before it)."""
    text = ""
    for item in items:
        if item.event == "reset":
            text = ""
        elif item.event == "delta":
            text += str(item.json()["delta"])
    return text
