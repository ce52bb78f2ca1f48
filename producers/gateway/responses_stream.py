"""A response job's chunk stream as the Responses API's server-sent events, numbered by
``sequence_number`` and resumable after any of them (``starting_after``).

The events are a function of the job's chunk stream (and its final record) alone, so every
reading of it, live or later, numbers them the same: a resumed reading replays the stream from
its start and sends only what comes after ``starting_after`` -- no gap, no repeat::

    0 response.created   1 response.queued   2 response.in_progress (once it has started)
    response.output_item.added, response.content_part.added (at its first text)
    response.output_text.delta ...
    response.output_text.done, response.content_part.done, response.output_item.done
    response.completed | response.incomplete | response.failed (also for cancelled)

A retry that restarts a text part of which was already in the stream ends it with an
``error`` event: the text cannot be taken back. The response itself goes on; retrieve it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import ServerSentEvent

from genq.chunks import decode_entry
from genq.redis_keys import stream_key
from producers.gateway.errors import redis_errors
from producers.gateway.openai_stream import job_chunks
from producers.gateway.responses_events import ResponseEvents
from producers.gateway.responses_shapes import (
    COMPLETED,
    IN_PROGRESS,
    INCOMPLETE,
    QUEUED,
    response_status,
)
from producers.gateway.state import Gateway
from schemas import GenqError, JobRecord, NotFound

NOTHING_SENT = -1


def sse(payload: dict[str, Any], sequence_number: int) -> ServerSentEvent:
    """One event: named by its type, its id the sequence number (``Last-Event-ID`` works)."""
    body = {**payload, "sequence_number": sequence_number}
    return ServerSentEvent(data=json.dumps(body), event=payload["type"], id=str(sequence_number))


async def response_events(
    gateway: Gateway, record: JobRecord, starting_after: int = NOTHING_SENT
) -> AsyncIterator[ServerSentEvent]:
    """The events of ``record``'s response after ``starting_after``, to its terminal one."""
    sequence_number = NOTHING_SENT
    try:
        async for payload in _events(gateway, record):
            sequence_number += 1
            if sequence_number > starting_after:
                yield sse(payload, sequence_number)
    except GenqError as exc:
        # Not numbered: it is about this reading (Redis or the store went away), not the
        # response; the client resumes after the last event it has.
        yield ServerSentEvent(
            data=json.dumps(ResponseEvents.error(exc.message, exc.code.value)), event="error"
        )


async def text_so_far(gateway: Gateway, job_id: str) -> str:
    """The text the job's current attempt has streamed so far (after its last ``reset``)."""
    with redis_errors("the response's event stream"):
        entries: Any = await gateway.redis.xrange(stream_key(job_id))
    parts: list[str] = []
    for entry_id, fields in entries:
        chunk = decode_entry(entry_id, fields)
        if chunk.type == "reset":
            parts.clear()
        elif chunk.type == "delta":
            parts.append(chunk.delta)
    return "".join(parts)


async def _events(gateway: Gateway, record: JobRecord) -> AsyncIterator[dict[str, Any]]:
    shapes = ResponseEvents(record)
    yield shapes.state("response.created", QUEUED)
    yield shapes.state("response.queued", QUEUED)
    started = opened = False
    text: list[str] = []
    async for chunk in job_chunks(gateway, record.id):
        if not chunk.final and not started:
            started = True
            yield shapes.state("response.in_progress", IN_PROGRESS)
        if chunk.type == "delta" and chunk.delta:
            if not opened:
                opened = True
                yield shapes.item_added()
                yield shapes.part_added()
            text.append(chunk.delta)
            yield shapes.delta(chunk.delta)
        elif chunk.type == "reset" and text:
            yield shapes.error(
                f"genq job {record.id} was retried after part of its text was streamed; the "
                "text so far is void. Retrieve the response for its final text."
            )
            return
        elif chunk.final:
            final = await gateway.find(record.id)
            if final is None:
                raise NotFound(f"response {record.id} is gone")
            if final.started_at is not None and not started:
                yield shapes.state("response.in_progress", IN_PROGRESS)
            async for event in _closing(shapes, final, "".join(text), opened):
                yield event
            return


async def _closing(
    shapes: ResponseEvents, final: JobRecord, text: str, opened: bool
) -> AsyncIterator[dict[str, Any]]:
    """The output's done events (when it has text, or finished), then the terminal one."""
    status = response_status(final)
    finished = status in (COMPLETED, INCOMPLETE)
    if finished and not opened:
        opened = True
        yield shapes.item_added()
        yield shapes.part_added()
    if opened:
        yield shapes.text_done(text)
        yield shapes.part_done(text)
        yield shapes.item_done(text, COMPLETED if status == COMPLETED else INCOMPLETE)
    yield shapes.ending(final)
