"""Ollama's native API: ``/api/chat`` and ``/api/generate`` streamed as NDJSON, ``/api/embed``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import httpx

from genq.runtime_errors import (
    describe_target,
    error_from_response,
    error_from_stream_message,
    json_object,
    transport_errors,
)
from genq.runtime_health import RuntimeHealth, probe_runtime
from schemas import ErrorCode, GenerationParams, JobKind, JobRequest, PermanentError, Usage
from workers.runtimes.base import (
    Embeddings,
    StreamEvent,
    dropped_stream,
    streamed_lines,
)

CHAT_PATH = "/api/chat"
GENERATE_PATH = "/api/generate"
EMBED_PATH = "/api/embed"

# genq's parameter names that Ollama spells differently inside ``options``.
_OPTION_NAMES = {"max_tokens": "num_predict"}


class OllamaRuntime:
    """An Ollama server; its base URL lives on the client."""

    name = "ollama"

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def stream(self, request: JobRequest, model: str) -> Iterator[StreamEvent]:
        """Stream a chat or completion as ``StreamEvent``s; closing stops the runtime."""
        path, body = generation_body(request, model)
        with streamed_lines(self._client, self.name, path, body) as (lines, target):
            yield from events_from_ndjson(lines, target)

    def embed(self, inputs: list[str], model: str) -> Embeddings:
        """Embed each input with ``/api/embed``."""
        target = describe_target(self._client, self.name, EMBED_PATH)
        with transport_errors(target):
            response = self._client.post(EMBED_PATH, json={"model": model, "input": inputs})
        if not response.is_success:
            raise error_from_response(response, target)
        payload = json_object(response.content, target)
        raw = payload.get("embeddings")
        if not (
            isinstance(raw, list)
            and len(raw) == len(inputs)
            and all(isinstance(vector, list) and vector for vector in raw)
        ):
            raise PermanentError(
                f"{target} returned no usable embeddings for {len(inputs)} inputs; "
                "check that the model supports embeddings",
                code=ErrorCode.RUNTIME_ERROR,
            )
        vectors = [[float(x) for x in vector] for vector in raw]
        prompt = int(payload.get("prompt_eval_count") or 0)
        return Embeddings(vectors=vectors, usage=Usage(prompt_tokens=prompt, total_tokens=prompt))

    def health(self) -> RuntimeHealth:
        """Healthy when ``GET /api/tags`` answers 200."""
        return probe_runtime(self.name, self._client)


def options_from(params: GenerationParams) -> dict[str, Any]:
    """The sampling parameters that are set, under Ollama's ``options`` names."""
    return {_OPTION_NAMES.get(k, k): v for k, v in params.model_dump(exclude_none=True).items()}


def generation_body(request: JobRequest, model: str) -> tuple[str, dict[str, Any]]:
    """The path and JSON body for a streamed chat or generate call."""
    body: dict[str, Any]
    if request.kind is JobKind.CHAT and request.messages:
        path, body = CHAT_PATH, {"messages": [m.model_dump() for m in request.messages]}
    elif request.kind is JobKind.COMPLETION and request.prompt is not None:
        path, body = GENERATE_PATH, {"prompt": request.prompt, "raw": False}
    else:
        raise PermanentError(
            f"a {request.kind.value} job cannot be streamed; embeddings go through embed()",
            code=ErrorCode.INVALID_REQUEST,
        )
    body.update(model=model, stream=True)
    options = options_from(request.generation_params())
    if options:
        body["options"] = options
    return path, body


def events_from_ndjson(lines: Iterable[str], target: str) -> Iterator[StreamEvent]:
    """Parse NDJSON lines into deltas and one final event from the ``done: true`` line."""
    chunks = 0
    for line in lines:
        if not line.strip():
            continue
        payload = json_object(line, target)
        if payload.get("error"):
            raise error_from_stream_message(line, target)
        delta = _line_text(payload)
        if delta:
            chunks += 1
            yield StreamEvent(delta=delta)
        if payload.get("done") is True:
            reason = payload.get("done_reason")
            yield StreamEvent(
                finish_reason=reason if isinstance(reason, str) and reason else "stop",
                usage=usage_from(payload),
            )
            return
    raise dropped_stream(target, chunks)


def _line_text(payload: dict[str, Any]) -> str:
    message = payload.get("message")
    text = message.get("content") if isinstance(message, dict) else payload.get("response")
    return text if isinstance(text, str) else ""


def usage_from(payload: dict[str, Any]) -> Usage | None:
    """Usage from a final line's ``prompt_eval_count``/``eval_count``; None if neither is given."""
    if "prompt_eval_count" not in payload and "eval_count" not in payload:
        return None
    # Ollama omits prompt_eval_count when the whole prompt came from its cache.
    prompt = int(payload.get("prompt_eval_count") or 0)
    completion = int(payload.get("eval_count") or 0)
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )
