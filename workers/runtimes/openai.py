"""OpenAI-compatible runtimes (llama.cpp server, vLLM, LocalAI, LM Studio, TGI) over SSE."""

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
from schemas import ErrorCode, JobKind, JobRequest, PermanentError, Usage
from workers.runtimes.base import (
    Embeddings,
    StreamEvent,
    dropped_stream,
    streamed_lines,
)

CHAT_PATH = "/v1/chat/completions"
COMPLETION_PATH = "/v1/completions"
EMBEDDINGS_PATH = "/v1/embeddings"


TOKENIZE_COUNT_PATH = "/extras/tokenize/count"


class OpenAIRuntime:
    """A server speaking the OpenAI HTTP API; base URL and API key live on the client."""

    name = "openai"

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def stream(self, request: JobRequest, model: str) -> Iterator[StreamEvent]:
        """Stream a chat or completion as ``StreamEvent``s; closing stops the runtime."""
        path, body = generation_body(request, model)
        with streamed_lines(self._client, self.name, path, body) as (lines, target):
            deltas = 0
            for event in events_from_sse(lines, target):
                deltas += bool(event.delta)
                if event.finish_reason is not None and event.usage is None:
                    event = StreamEvent(
                        finish_reason=event.finish_reason,
                        usage=self._counted_usage(request, model, deltas),
                    )
                yield event

    def _counted_usage(self, request: JobRequest, model: str, deltas: int) -> Usage:
        """Usage for servers that ignore ``include_usage`` (llama-cpp-python): llama.cpp sends
        one token per chunk, and its ``/extras/tokenize/count`` counts the prompt's tokens
        (message contents only: the chat template's few tokens are not included)."""
        text = request.prompt or "\n".join(m.content for m in request.messages or [])
        prompt_tokens = 0
        try:
            response = self._client.post(
                TOKENIZE_COUNT_PATH, json={"input": text, "model": model}, timeout=5.0
            )
            if response.is_success:
                prompt_tokens = int(response.json().get("count") or 0)
        except (httpx.HTTPError, ValueError):
            pass  # a server without the endpoint: prompt tokens stay unknown (0)
        return Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=deltas,
            total_tokens=prompt_tokens + deltas,
        )

    def embed(self, inputs: list[str], model: str) -> Embeddings:
        """Embed each input; per-token vectors (llama-cpp-python) are mean-pooled."""
        target = describe_target(self._client, self.name, EMBEDDINGS_PATH)
        with transport_errors(target):
            response = self._client.post(EMBEDDINGS_PATH, json={"model": model, "input": inputs})
        if not response.is_success:
            raise error_from_response(response, target)
        payload = json_object(response.content, target)
        rows = [row for row in payload.get("data") or [] if isinstance(row, dict)]
        rows.sort(key=lambda row: row.get("index", 0))
        vectors = [pool_embedding(row.get("embedding"), target) for row in rows]
        if len(vectors) != len(inputs):
            raise PermanentError(
                f"{target} returned {len(vectors)} embeddings for {len(inputs)} inputs; "
                "check that the model is an embedding-capable model",
                code=ErrorCode.RUNTIME_ERROR,
            )
        usage = usage_from(payload.get("usage")) or Usage()
        return Embeddings(vectors=vectors, usage=usage)

    def health(self) -> RuntimeHealth:
        """Healthy when ``GET /v1/models`` answers 200."""
        return probe_runtime(self.name, self._client)


def generation_body(request: JobRequest, model: str) -> tuple[str, dict[str, Any]]:
    """The path and JSON body for a streamed chat or completion, with the params that are set."""
    body: dict[str, Any]
    if request.kind is JobKind.CHAT and request.messages:
        path, body = CHAT_PATH, {"messages": [m.model_dump() for m in request.messages]}
    elif request.kind is JobKind.COMPLETION and request.prompt is not None:
        path, body = COMPLETION_PATH, {"prompt": request.prompt}
    else:
        raise PermanentError(
            f"a {request.kind.value} job cannot be streamed; embeddings go through embed()",
            code=ErrorCode.INVALID_REQUEST,
        )
    body.update(request.generation_params().model_dump(exclude_none=True))
    body.update(model=model, stream=True, stream_options={"include_usage": True})
    return path, body


def events_from_sse(lines: Iterable[str], target: str) -> Iterator[StreamEvent]:
    """Parse ``data: {...}`` / ``data: [DONE]`` lines into deltas and one final event."""
    finish_reason: str | None = None
    usage: Usage | None = None
    chunks = 0
    for line in lines:
        if not line.startswith("data:"):
            continue  # blank separators, ": keep-alive" comments, "event:" names
        data = line[5:].strip()
        if data == "[DONE]":
            yield StreamEvent(finish_reason=finish_reason or "stop", usage=usage)
            return
        payload = json_object(data, target)
        if payload.get("error"):
            raise error_from_stream_message(data, target)
        usage = usage_from(payload.get("usage")) or usage
        for choice in payload.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            delta = _choice_text(choice)
            if delta:
                chunks += 1
                yield StreamEvent(delta=delta)
            finish_reason = choice.get("finish_reason") or finish_reason
    if finish_reason is None:
        raise dropped_stream(target, chunks)
    # Some servers end the body without [DONE]; a finish_reason already says it is complete.
    yield StreamEvent(finish_reason=finish_reason, usage=usage)


def _choice_text(choice: dict[str, Any]) -> str:
    delta = choice.get("delta")
    text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
    return text if isinstance(text, str) else ""


def usage_from(raw: Any) -> Usage | None:
    """``Usage`` from an OpenAI ``usage`` object, or None when absent."""
    if not isinstance(raw, dict):
        return None
    prompt = int(raw.get("prompt_tokens") or 0)
    completion = int(raw.get("completion_tokens") or 0)
    total = int(raw.get("total_tokens") or prompt + completion)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


def pool_embedding(raw: Any, target: str) -> list[float]:
    """A flat vector as is; a list of per-token vectors mean-pooled into one."""
    if isinstance(raw, list) and raw and all(isinstance(x, int | float) for x in raw):
        return [float(x) for x in raw]
    if isinstance(raw, list) and raw and all(isinstance(row, list) and row for row in raw):
        width = len(raw[0])
        if all(len(row) == width for row in raw):
            return [sum(float(row[i]) for row in raw) / len(raw) for i in range(width)]
    raise PermanentError(
        f"{target} returned an embedding that is neither a vector nor a list of equal-length "
        "per-token vectors; check that the model supports embeddings",
        code=ErrorCode.RUNTIME_ERROR,
    )
