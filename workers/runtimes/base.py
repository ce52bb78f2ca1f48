"""The one runtime interface, and the streaming pieces every adapter shares.

Every adapter streams a generation, embeds, and reports health over an ``httpx.Client`` built
outside (base URL, API key, timeouts). Whatever goes wrong on the wire leaves an adapter as
``TransientError`` (retry later) or ``PermanentError`` (retrying cannot help), never as an httpx
exception (see ``genq.runtime_errors``, which the gateway's readiness probe shares).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from genq.runtime_errors import describe_target, error_from_response, transport_errors
from genq.runtime_health import RuntimeHealth
from schemas import ErrorCode, JobRequest, TransientError, Usage

# After the final event only the end of the body is left; a server still talking is cut off.
DRAIN_MAX_LINES = 16


@dataclass(frozen=True)
class StreamEvent:
    """One piece of a streamed generation; the last one carries ``finish_reason``."""

    delta: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


@dataclass(frozen=True)
class Embeddings:
    """One vector per input, in input order, and the tokens the runtime counted."""

    vectors: list[list[float]]
    usage: Usage


class Runtime(Protocol):
    """What a worker needs from an LLM runtime."""

    def stream(self, request: JobRequest, model: str) -> Iterator[StreamEvent]:
        """Stream a chat or completion; closing the iterator closes the HTTP response."""
        ...

    def embed(self, inputs: list[str], model: str) -> Embeddings:
        """Embed each input into one vector."""
        ...

    def health(self) -> RuntimeHealth:
        """Probe the runtime without raising."""
        ...


def dropped_stream(target: str, chunks: int) -> TransientError:
    """The stream ended before the runtime said it was finished."""
    return TransientError(
        f"{target} closed the stream after {chunks} chunks without finishing "
        "(the runtime crashed, restarted or dropped the connection); retry later",
        code=ErrorCode.RUNTIME_UNAVAILABLE,
    )


@contextlib.contextmanager
def streamed_lines(
    client: httpx.Client, runtime: str, path: str, body: dict[str, Any]
) -> Iterator[tuple[Iterator[str], str]]:
    """POST ``body`` and hand over the response's lines (and the target, for messages).

    Leaving the block closes the response, which is what makes a runtime stop generating.
    Leaving it normally (the stream was read to its end) first reads what is left of the body,
    the chunked encoding's last chunk, so the connection goes back to the pool for the next
    job instead of being closed and opened again.
    """
    target = describe_target(client, runtime, path)
    with transport_errors(target), client.stream("POST", path, json=body) as response:
        if not response.is_success:
            raise error_from_response(response, target)
        lines = response.iter_lines()
        yield lines, target
        with contextlib.suppress(httpx.HTTPError):  # the result is complete either way
            for _ in itertools.islice(lines, DRAIN_MAX_LINES):
                pass
