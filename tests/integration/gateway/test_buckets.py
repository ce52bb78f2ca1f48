"""The token bucket's Lua script against the real Redis: burst, refill rate, separate keys."""

from __future__ import annotations

import asyncio
import math
import time

import pytest
import redis.asyncio as aioredis

from producers.gateway.quotas import BucketDecision, RateLimiter

pytestmark = pytest.mark.integration


async def takes(url: str, bucket: str, n: int, *, rate: float, burst: int) -> list[BucketDecision]:
    client = aioredis.Redis.from_url(url)
    try:
        limiter = RateLimiter(client, rate=rate, burst=burst)
        return [await limiter.take(bucket) for _ in range(n)]
    finally:
        await client.aclose()


def test_burst_then_refusal_with_the_wait(redis_url: str) -> None:
    decisions = asyncio.run(takes(redis_url, "k1", 6, rate=2, burst=4))
    assert [d.allowed for d in decisions] == [True] * 4 + [False] * 2
    assert 0 < decisions[-1].retry_after_seconds <= 0.5


def test_refills_at_the_rate(redis_url: str) -> None:
    """Drained, the bucket refills at ``rate``: after at least 0.25 s at 10/s, at least two
    takes pass, and never more than the time since it was drained refilled (a slow machine
    widens that bound; it never makes the test pass or fail by itself)."""
    drained_from = time.monotonic()
    drained = asyncio.run(takes(redis_url, "k2", 4, rate=10, burst=3))
    assert [d.allowed for d in drained] == [True, True, True, False]
    asyncio.run(asyncio.sleep(0.25))  # at least 2.5 tokens at 10/s
    refilled = asyncio.run(takes(redis_url, "k2", 3, rate=10, burst=3))
    allowed = sum(d.allowed for d in refilled)
    most = min(3, math.ceil((time.monotonic() - drained_from) * 10))
    assert 2 <= allowed <= most, (allowed, most)
    assert [d.allowed for d in refilled] == [True] * allowed + [False] * (3 - allowed)


def test_buckets_are_per_key(redis_url: str) -> None:
    assert not asyncio.run(takes(redis_url, "a", 2, rate=1, burst=1))[1].allowed
    assert asyncio.run(takes(redis_url, "b", 1, rate=1, burst=1))[0].allowed


def test_without_redis_the_limiter_lets_requests_through() -> None:
    decisions = asyncio.run(takes("redis://127.0.0.1:9/0", "k", 2, rate=1, burst=1))
    assert all(d.allowed for d in decisions)
