"""What the gateway's limits count: a token bucket per API key in Redis (one atomic Lua
script), and each tenant's queued jobs."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis

from genq import constants as c
from genq.redis_keys import rate_key
from genq.store import JobStore
from schemas import RateLimited
from schemas.errors import ErrorCode

log = logging.getLogger(__name__)

# Refill by elapsed time (the server's clock, so every gateway agrees), then take one token.
# Returns {allowed (0/1), milliseconds until a token is available}.
TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now_parts = redis.call('TIME')
local now_ms = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at_ms')
local tokens = tonumber(state[1])
local at_ms = tonumber(state[2])
if tokens == nil or at_ms == nil then
  tokens = burst
  at_ms = now_ms
end
tokens = math.min(burst, tokens + math.max(0, now_ms - at_ms) * rate / 1000)
local allowed = 0
local wait_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait_ms = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at_ms', tostring(now_ms))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {allowed, wait_ms}
"""


@dataclass(frozen=True)
class BucketDecision:
    allowed: bool
    retry_after_seconds: float


class RateLimiter:
    """Token buckets in Redis, one per API key: ``rate`` tokens a second, at most ``burst``."""

    def __init__(self, client: aioredis.Redis, *, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._script = client.register_script(TOKEN_BUCKET_LUA)

    async def take(self, bucket: str) -> BucketDecision:
        """Take a token for ``bucket``. Without Redis the request is let through: every path
        that needs Redis then answers 503 itself, and reads from the store keep working."""
        try:
            allowed, wait_ms = await self._script(
                keys=[rate_key(bucket)], args=[self.rate, self.burst]
            )
        except redis.RedisError as exc:
            log.warning("rate limiter skipped: redis unavailable (%s)", exc.__class__.__name__)
            return BucketDecision(True, 0.0)
        return BucketDecision(bool(allowed), int(wait_ms) / 1000)


class QueuedGauge:
    """Per-tenant count of queued jobs for the cap, without a ``COUNT`` per submission.

    The store's count is re-read at most every ``recount_seconds``; jobs this gateway accepted
    since are added on top. Near the cap it always asks the store again before refusing, so a
    refusal is exact; far from it the estimate may lag other gateways by ``recount_seconds``.
    """

    def __init__(self, store: JobStore, cap: int, recount_seconds: float) -> None:
        self.store = store
        self.cap = cap
        self.recount_seconds = recount_seconds
        self._lock = threading.Lock()
        # tenant -> (count read from the store, when (monotonic), accepted since)
        self._counts: dict[str, tuple[int, float, int]] = {}

    def count(self, tenant: str) -> int:
        """The store's count (what a subclass caps instead: ``routes_openai.ModelQueue``)."""
        return self.store.count_queued(tenant)

    def refusal(self, tenant: str, queued: int) -> str:
        return (
            f"tenant {tenant!r} already has {queued} queued jobs (limit {self.cap}); "
            "wait for some to start before submitting more"
        )

    def _recount(self, tenant: str) -> int:
        queued = self.count(tenant)
        with self._lock:
            self._counts[tenant] = (queued, time.monotonic(), 0)
        return queued

    def _estimate(self, tenant: str) -> int | None:
        with self._lock:
            entry = self._counts.get(tenant)
        if entry is None or time.monotonic() - entry[1] > self.recount_seconds:
            return None
        return entry[0] + entry[2]

    def check(self, tenant: str) -> None:
        """Refuse a new job (429 ``queue_full``) while ``tenant`` has ``cap`` jobs queued."""
        queued = self._estimate(tenant)
        if queued is None or queued >= self.cap:
            queued = self._recount(tenant)
        if queued >= self.cap:
            raise RateLimited(
                self.refusal(tenant, queued),
                code=ErrorCode.QUEUE_FULL,
                retry_after_seconds=c.GATEWAY_QUEUE_FULL_RETRY_AFTER_SECONDS,
            )

    def accepted(self, tenant: str) -> None:
        """Count a job this gateway just queued for ``tenant``."""
        with self._lock:
            entry = self._counts.get(tenant)
            if entry is not None:
                self._counts[tenant] = (entry[0], entry[1], entry[2] + 1)
