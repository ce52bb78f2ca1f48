"""Runtime adapters: one small interface (stream, embed, health) over an ``httpx.Client``."""

from __future__ import annotations

import httpx

from genq.runtime_errors import (
    RuntimeFailure,
    error_for_status,
    error_from_response,
    error_from_stream_message,
    parse_retry_after,
    transport_errors,
)
from genq.runtime_health import RUNTIME_KINDS, RuntimeHealth
from workers.runtimes.base import Embeddings, Runtime, StreamEvent
from workers.runtimes.ollama import OllamaRuntime
from workers.runtimes.openai import OpenAIRuntime

__all__ = [
    "RUNTIME_KINDS",
    "Embeddings",
    "OllamaRuntime",
    "OpenAIRuntime",
    "Runtime",
    "RuntimeFailure",
    "RuntimeHealth",
    "StreamEvent",
    "build_runtime",
    "error_for_status",
    "error_from_response",
    "error_from_stream_message",
    "parse_retry_after",
    "transport_errors",
]


def build_runtime(kind: str, client: httpx.Client) -> Runtime:
    """The adapter for ``kind`` ("openai" or "ollama") over ``client`` (base URL, key, timeouts)."""
    if kind == "openai":
        return OpenAIRuntime(client)
    if kind == "ollama":
        return OllamaRuntime(client)
    raise ValueError(f"unknown runtime kind {kind!r}; use one of {', '.join(RUNTIME_KINDS)}")
