"""A job's chunk stream as OpenAI's server-sent events: ``chat.completion.chunk`` (or streamed
``text_completion``) objects, the usage chunk if asked for, then ``data: [DONE]``.

A job that ends without an answer ends the stream with an ``{"error": …}`` event, which the
SDK raises as ``APIError``. So does a retry that restarts a text the client has already been
sent part of: OpenAI's stream has no way to take text back.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import ServerSentEvent

from genq import constants as c
from genq.chunks import Chunk
from producers.gateway.errors import status_for
from producers.gateway.openai_responses import (
    ChunkShapes,
    openai_error,
    outcome_error,
    outcome_status,
    usage_from_chunk,
)
from producers.gateway.state import Gateway
from producers.gateway.streaming import Silence, read_after
from schemas import GenqError, JobRecord, JobStatus, NotFound

DONE = "[DONE]"


def data_event(payload: dict[str, Any] | str) -> ServerSentEvent:
    """One ``data:`` event (no ``event:`` name: the SDK reads unnamed events only)."""
    return ServerSentEvent(data=payload if isinstance(payload, str) else json.dumps(payload))


def end_chunk(record: JobRecord, seq: int) -> Chunk:
    """The final entry of a job whose stream has expired, rebuilt from its record."""
    data = {
        "status": record.status.value,
        "finish_reason": record.result.finish_reason if record.result else None,
        "usage": record.usage.model_dump() if record.usage else None,
    }
    return Chunk(seq=seq, type="end", data=data)


async def job_chunks(gateway: Gateway, job_id: str) -> AsyncIterator[Chunk]:
    """The job's chunks from the first to the ``end`` one, waiting while it is queued."""
    seq = 0
    silence = Silence()
    while True:
        chunks = await read_after(gateway.redis, job_id, seq, c.REDIS_BLOCK_SLICE_MS)
        if not chunks:
            if not silence.recheck_due():
                continue
            current = await gateway.find(job_id)
            if current is None:
                raise NotFound(f"job {job_id} is gone")
            if silence.gave_up(current):  # its stream is gone or was never closed
                text = current.result.text if current.result else None
                if seq == 0 and text:
                    yield Chunk(seq=1, type="delta", delta=text)
                yield end_chunk(current, seq + 2)
                return
            continue
        silence.heard()
        for chunk in chunks:
            seq = chunk.seq
            yield chunk
            if chunk.final:
                return


def error_event(error: GenqError, status: int) -> ServerSentEvent:
    return data_event(openai_error(error, status))


async def openai_events(
    gateway: Gateway, record: JobRecord, shapes: ChunkShapes
) -> AsyncIterator[ServerSentEvent]:
    """The OpenAI events of ``record``'s job, to ``[DONE]`` or an error event."""
    opening = shapes.opening()
    if opening is not None:
        yield data_event(opening)
    sent_text = False
    try:
        async for chunk in job_chunks(gateway, record.id):
            if chunk.type == "delta" and chunk.delta:
                sent_text = True
                yield data_event(shapes.delta(chunk.delta))
            elif chunk.type == "reset" and sent_text:
                restarted = GenqError(
                    f"genq job {record.id} was retried after part of its answer was sent; "
                    "the text so far is void. Send the request again.",
                )
                yield error_event(restarted, 500)
                return
            elif chunk.final:
                async for event in _ending(gateway, record.id, shapes, chunk):
                    yield event
                return
    except GenqError as exc:
        yield error_event(exc, status_for(exc))


async def _ending(
    gateway: Gateway, job_id: str, shapes: ChunkShapes, end: Chunk
) -> AsyncIterator[ServerSentEvent]:
    data = end.data or {}
    if data.get("status") != JobStatus.SUCCEEDED.value:
        final = await gateway.find(job_id)
        error = outcome_error(final) if final is not None else None
        if final is not None and error is not None:
            yield error_event(error, outcome_status(final))
            return
    yield data_event(shapes.finish(data.get("finish_reason")))
    usage = shapes.usage(usage_from_chunk(data))
    if usage is not None:
        yield data_event(usage)
    yield data_event(DONE)
