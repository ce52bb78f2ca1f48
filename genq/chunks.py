"""The per-job chunk stream: a capped, expiring Redis Stream addressed by ``seq``.

Entry ids are ``<seq>-0`` so readers resume with ``XREAD … <seq>-0`` ("after seq").
Entry fields: ``type`` = ``start`` (an attempt began, ``attempt`` as JSON), ``delta`` (with
``delta``), ``reset`` (a retry restarts the text), or ``end`` (with ``status``,
``finish_reason``, ``usage`` as JSON).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import redis

from genq import constants as c
from genq.redis_keys import stream_key
from schemas import BrokerUnavailable


@dataclass(frozen=True)
class Chunk:
    seq: int
    type: str
    delta: str = ""
    data: dict[str, Any] | None = None

    @property
    def final(self) -> bool:
        return self.type == "end"


def decode_entry(entry_id: bytes | str, fields: dict[Any, Any]) -> Chunk:
    eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    f = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in fields.items()
    }
    seq = int(eid.split("-", 1)[0])
    kind = f.get("type", "delta")
    data = json.loads(f["data"]) if "data" in f else None
    return Chunk(seq=seq, type=kind, delta=f.get("delta", ""), data=data)


class ChunkWriter:
    """Coalesces deltas for a few milliseconds so a fast runtime costs few Redis writes."""

    def __init__(
        self,
        client: redis.Redis,
        job_id: str,
        *,
        coalesce_ms: int,
        maxlen: int,
        ttl_seconds: int,
        fresh: bool = False,
    ) -> None:
        self.client = client
        self.key = stream_key(job_id)
        self.coalesce_seconds = coalesce_ms / 1000
        self.maxlen = maxlen
        self.ttl_seconds = ttl_seconds
        # A first attempt starts an empty stream; a retry continues after what readers saw.
        self._last_type: str | None = None
        self.seq = 0 if fresh else self._last_seq()
        self._buffer: list[str] = []
        self._sent_delta = False
        self._first_buffered_at = 0.0

    def _last_seq(self) -> int:
        last: Any = self.client.xrevrange(self.key, count=1)
        if not last:
            return 0
        chunk = decode_entry(last[0][0], last[0][1])
        self._last_type = chunk.type
        return chunk.seq

    def _add(self, fields: dict[str, str], pipe: Any = None) -> None:
        own = pipe is None
        pipe = self.client.pipeline(transaction=False) if own else pipe
        self.seq += 1
        pipe.xadd(self.key, fields, id=f"{self.seq}-0", maxlen=self.maxlen, approximate=True)
        if self.seq == 1:
            # Expire even if the worker dies mid-job; shortened when the job ends.
            pipe.expire(self.key, self.ttl_seconds + 86400)
        if own:
            self._execute(pipe, [fields])

    def _execute(
        self, pipe: Any, pending: list[dict[str, str]], expire_seconds: int | None = None
    ) -> None:
        """Run ``pipe``; if another writer got ahead (an entry id already taken), continue
        after the stream's real end instead of failing the job."""
        try:
            pipe.execute()
        except redis.ResponseError as exc:
            if "equal or smaller" not in str(exc):
                raise
            self.seq = self._last_seq()
            retry = self.client.pipeline(transaction=False)
            for fields in pending:
                self.seq += 1
                retry.xadd(
                    self.key,
                    cast(Any, fields),
                    id=f"{self.seq}-0",
                    maxlen=self.maxlen,
                    approximate=True,
                )
            retry.expire(self.key, expire_seconds or self.ttl_seconds + 86400)
            retry.execute()

    def begin_attempt(self, attempt: int) -> None:
        """An attempt starts (readers learn the job runs before its first token: a background
        response's ``response.in_progress``); a retry regenerates from scratch, so it first
        tells readers to drop what they have, if an earlier attempt streamed anything."""
        pipe = self.client.pipeline(transaction=False)
        pending = []
        if self.seq > 0 and self._last_type != "start":
            pending.append({"type": "reset", "data": json.dumps({"attempt": attempt})})
        pending.append({"type": "start", "data": json.dumps({"attempt": attempt})})
        for fields in pending:
            self._add(fields, pipe)
        self._execute(pipe, pending)
        self._last_type = "start"

    def append(self, delta: str) -> bool:
        """Buffer ``delta``; returns True when the buffer was flushed to Redis.

        The first delta of an attempt goes out at once (time to first token matters most);
        later ones wait up to the coalescing window.
        """
        if not delta:
            return False
        now = time.monotonic()
        if not self._buffer:
            self._first_buffered_at = now
        self._buffer.append(delta)
        if not self._sent_delta or now - self._first_buffered_at >= self.coalesce_seconds:
            self.flush()
            self._sent_delta = True
            return True
        return False

    def flush(self) -> None:
        if self._buffer:
            self._add({"type": "delta", "delta": "".join(self._buffer)})
            self._buffer.clear()

    def finish(self, status: str, finish_reason: str | None, usage: dict[str, Any] | None) -> None:
        """Write what is buffered, the final entry and the expiry, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        pending = []
        if self._buffer:
            pending.append({"type": "delta", "delta": "".join(self._buffer)})
            self._buffer.clear()
        data = {"status": status, "finish_reason": finish_reason, "usage": usage}
        pending.append({"type": "end", "data": json.dumps(data)})
        for fields in pending:
            self._add(fields, pipe)
        pipe.expire(self.key, self.ttl_seconds)
        self._execute(pipe, pending, self.ttl_seconds)


@contextmanager
def stream_errors() -> Iterator[None]:
    """A reader's Redis failure as ``broker_unavailable`` (retryable), not a library error."""
    try:
        yield
    except redis.RedisError as exc:
        raise BrokerUnavailable(
            f"the job's chunk stream is unavailable (redis: {exc.__class__.__name__}); "
            "retry shortly"
        ) from exc


def block_slice_ms(block_ms: int) -> int:
    """What one ``XREAD BLOCK`` may wait of ``block_ms``: a block as long as the socket
    timeout would be cut off by it, as if Redis were gone."""
    return max(1, min(block_ms, c.REDIS_BLOCK_SLICE_MS))


def last_chunk(client: redis.Redis, job_id: str) -> Chunk | None:
    """The newest entry of the job's stream, if any."""
    with stream_errors():
        last: Any = client.xrevrange(stream_key(job_id), count=1)
    return decode_entry(last[0][0], last[0][1]) if last else None


def read_chunks(
    client: redis.Redis,
    job_id: str,
    *,
    after_seq: int = 0,
    block_ms: int = 1000,
    count: int = 500,
) -> list[Chunk]:
    """Chunks with ``seq > after_seq``, waiting up to ``block_ms`` (at most one
    ``REDIS_BLOCK_SLICE_MS``: callers loop) for new ones."""
    with stream_errors():
        reply: Any = client.xread(
            {stream_key(job_id): f"{after_seq}-0"}, count=count, block=block_slice_ms(block_ms)
        )
    if not reply:
        return []
    _key, entries = reply[0]
    return [decode_entry(eid, fields) for eid, fields in entries]


def follow(
    client: redis.Redis,
    job_id: str,
    *,
    after_seq: int = 0,
    idle_timeout_seconds: float | None = None,
) -> Iterator[Chunk]:
    """Yield chunks after ``after_seq`` until the final one (or ``idle_timeout`` of silence);
    a job still queued is waited for however long. A lost Redis raises ``BrokerUnavailable``."""
    seq = after_seq
    idle_since = time.monotonic()
    while True:
        chunks = read_chunks(client, job_id, after_seq=seq)
        if not chunks:
            if idle_timeout_seconds and time.monotonic() - idle_since > idle_timeout_seconds:
                return
            continue
        idle_since = time.monotonic()
        for chunk in chunks:
            seq = chunk.seq
            yield chunk
            if chunk.final:
                return
