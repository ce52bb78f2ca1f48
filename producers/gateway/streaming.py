"""Following a job's chunk stream from the event loop: SSE to a client, and the long poll.

Both block in ``XREAD`` on the job's Redis Stream (``genq.chunks`` writes it), so a reader wakes
when a chunk or the final ``end`` entry arrives instead of polling the store. A job may stay
queued for minutes: the wait is a series of reads no longer than ``REDIS_BLOCK_SLICE_MS`` each,
so none outlives the Redis socket timeout (which still catches a Redis that is really gone).
The store is asked only every ``GATEWAY_STORE_RECHECK_SECONDS`` of silence, for the case where
the stream has already expired or its writer died before closing it (``Silence``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import anyio
import redis.asyncio as aioredis
from sse_starlette import ServerSentEvent

from genq import constants as c
from genq.chunks import Chunk, block_slice_ms, decode_entry
from genq.redis_keys import stream_key
from genq.store import utcnow
from producers.gateway.errors import redis_errors
from producers.gateway.state import Gateway
from schemas import GenqError, InvalidRequest, JobRecord

READ_COUNT = 500
# Stream entry ids are 64-bit; a larger resume point could only be a client's mistake.
MAX_SEQ = 2**63 - 1


def ping_comment() -> Any:
    """A keep-alive for ``EventSourceResponse(ping_message_factory=...)``: a comment line
    without the blank line that would end an event. SSE readers that keep the last ``id:``
    (the ``openai`` SDK, ``httpx-sse``) turn every blank line after one into an event, so
    sse-starlette's usual ``: ping`` block reached them as an event with empty data and the
    previous id (the SDK raised ``JSONDecodeError``; a resumer saw an id twice). The comment
    rides with the next event instead; every SSE reader skips it."""
    return b": ping\r\n"


def resume_point(last_event_id: str | None, starting_after: int | None) -> int:
    """The seq to resume after: ``Last-Event-ID`` (what a reconnecting client sends) wins
    over ``?starting_after``; neither means from the start."""
    if last_event_id is not None and last_event_id.strip() != "":
        value = last_event_id.strip()
        if not value.isascii() or not value.isdigit():
            raise InvalidRequest(
                f"Last-Event-ID must be the number of the last event you received, not {value!r}",
                details=[{"field": "Last-Event-ID", "in": "header", "message": "not a number"}],
            )
        if int(value) > MAX_SEQ:
            raise InvalidRequest("Last-Event-ID is larger than any event id this API sends")
        return int(value)
    return starting_after or 0


def chunk_from_entry(entry_id: bytes | str, fields: dict[Any, Any]) -> Chunk:
    """Decode one stream entry (id ``<seq>-0``) the way ``genq.chunks`` wrote it."""
    return decode_entry(entry_id, fields)


async def read_after(client: aioredis.Redis, job_id: str, seq: int, block_ms: int) -> list[Chunk]:
    """Chunks with a seq above ``seq``, waiting up to ``block_ms`` (at most one
    ``REDIS_BLOCK_SLICE_MS``: callers loop) for the first one."""
    with redis_errors("the job's chunk stream"):
        reply: Any = await client.xread(
            {stream_key(job_id): f"{seq}-0"}, count=READ_COUNT, block=block_slice_ms(block_ms)
        )
    if not reply:
        return []
    return [chunk_from_entry(eid, fields) for eid, fields in reply[0][1]]


async def last_chunk(client: aioredis.Redis, job_id: str) -> Chunk | None:
    with redis_errors("the job's chunk stream"):
        last: Any = await client.xrevrange(stream_key(job_id), count=1)
    return chunk_from_entry(last[0][0], last[0][1]) if last else None


def sse_event(chunk: Chunk) -> ServerSentEvent:
    """One SSE event per chunk: ``id`` is its seq, ``event`` its type, ``data`` JSON."""
    if chunk.type == "delta":
        data: dict[str, Any] = {"delta": chunk.delta}
    else:
        data = dict(chunk.data or {})
    return ServerSentEvent(data=json.dumps(data), event=chunk.type, id=str(chunk.seq))


def settled_long_ago(record: JobRecord) -> bool:
    """Terminal for far longer than a writer needs to close the stream after the transition."""
    if not record.status.terminal or record.finished_at is None:
        return False
    return record.finished_at < utcnow() - timedelta(seconds=c.GATEWAY_STREAM_GONE_SECONDS)


class Silence:
    """A follower that hears nothing: when to ask the store again, and when to stop waiting
    for a terminal job's ``end`` entry and answer from its record instead.

    A writer commits the terminal transition first and closes the stream right after, so a
    reader may find the record terminal a moment before the ``end`` arrives. The record's
    ``finished_at`` does not say how long ago that moment was (it is taken before the writer
    waits its turn to commit): the reader gives the stream one more recheck interval from
    when it first saw the job terminal, unless the job settled so long ago that its stream has
    surely expired.
    """

    def __init__(self, clock: Callable[[], float] = anyio.current_time) -> None:
        self._clock = clock
        self._since = clock()
        self._terminal_seen_at: float | None = None

    def heard(self) -> None:
        self._since = self._clock()

    def recheck_due(self) -> bool:
        """Whether the store should be asked now (then the silence counts from now)."""
        if self._clock() - self._since < c.GATEWAY_STORE_RECHECK_SECONDS:
            return False
        self._since = self._clock()
        return True

    def gave_up(self, record: JobRecord) -> bool:
        """Whether to end from ``record``: terminal, and its stream had time to close."""
        if not record.status.terminal:
            return False
        if settled_long_ago(record):
            return True
        now = self._clock()
        if self._terminal_seen_at is None:
            self._terminal_seen_at = now
        return now - self._terminal_seen_at >= c.GATEWAY_STORE_RECHECK_SECONDS


def end_from_record(record: JobRecord) -> ServerSentEvent:
    """A final event from the store, for a job whose stream has expired (its text is in the
    record)."""
    data = {
        "status": record.status.value,
        "finish_reason": record.result.finish_reason if record.result else None,
        "usage": record.usage.model_dump() if record.usage else None,
        "stream_expired": True,
    }
    return ServerSentEvent(data=json.dumps(data), event="end")


async def chunk_events(
    gateway: Gateway, record: JobRecord, after_seq: int
) -> AsyncIterator[ServerSentEvent]:
    """Events after ``after_seq`` until the ``end`` one; waits for a job that has not started.

    Call it before the response starts: problems with the job or Redis are then still a
    plain error answer. Once streaming, a lost Redis ends the stream with an ``error`` event
    (the client reconnects with ``Last-Event-ID``).
    """
    last = await last_chunk(gateway.redis, record.id)
    if last is not None and last.final and last.seq <= after_seq:
        return _no_events()  # the client already has the end event
    if last is None and settled_long_ago(record):
        return _single(end_from_record(record))
    return _follow(gateway, record.id, after_seq)


async def _no_events() -> AsyncIterator[ServerSentEvent]:
    return
    yield  # pragma: no cover - makes this an async generator


async def _single(event: ServerSentEvent) -> AsyncIterator[ServerSentEvent]:
    yield event


async def _follow(gateway: Gateway, job_id: str, seq: int) -> AsyncIterator[ServerSentEvent]:
    try:
        silence = Silence()
        while True:
            chunks = await read_after(gateway.redis, job_id, seq, c.REDIS_BLOCK_SLICE_MS)
            if not chunks:
                if not silence.recheck_due():
                    continue
                current = await gateway.find(job_id)
                if current is None:
                    return
                if silence.gave_up(current):
                    yield end_from_record(current)
                    return
                continue
            silence.heard()
            for chunk in chunks:
                seq = chunk.seq
                yield sse_event(chunk)
                if chunk.final:
                    return
    except GenqError as exc:
        yield ServerSentEvent(data=json.dumps(exc.to_body()), event="error")


async def wait_until_terminal(
    gateway: Gateway, job_id: str, tenant: str | None, timeout_seconds: float
) -> JobRecord:
    """The job's record as soon as it is terminal, or as it stands after ``timeout_seconds``.

    The stream is read from its start: a job that has not begun has none yet (the read waits
    for its first chunk), one that ended meanwhile shows its end at once, and one mid-way
    hands over what it has so far, which this reads on as it comes anyway. The record is read
    once, at the end; while waiting only the job's state is (it says whether the job exists in
    ``tenant``, and whether it has ended).
    """
    if timeout_seconds <= 0 or (await gateway.status(job_id, tenant)).terminal:
        return await gateway.job(job_id, tenant)
    seq = 0
    silence = Silence()
    deadline = anyio.current_time() + timeout_seconds
    while (remaining := deadline - anyio.current_time()) > 0:
        chunks = await read_after(gateway.redis, job_id, seq, int(remaining * 1000))
        if chunks:
            seq = chunks[-1].seq
            silence.heard()
            if any(chunk.final for chunk in chunks):
                break
            continue
        if not silence.recheck_due():
            continue
        if (await gateway.status(job_id, tenant)).terminal:
            break
    return await gateway.job(job_id, tenant)
