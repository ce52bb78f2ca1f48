"""kombu's Redis transport with one ``redis.Redis`` client per connection pool.

Stock kombu builds a new ``redis.Redis`` (on the same pool) for every command it sends outside
its event loop: a producer pays one per message it publishes on its own (the LPUSH), a worker
one per ack, unacked-record write and fanout publish. With redis-py 8 that constructor fills a
table of some 170 response callbacks each time, which made it the worker main process's
biggest single cost, and 11-14 % of the CPU of a ``GenqClient.submit`` (store and publish:
3.0-3.1 → 2.65 ms) and 25-39 % of a publish alone (0.6-0.74 → 0.46 ms), on the 2-core
machine this was measured on. A batched publish (the gateway's submit batcher) builds one
per batch either way.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis

__all__ = ["Channel", "Transport", "transport_for"]

# The broker URL schemes kombu serves with ``kombu.transport.redis.Transport``.
REDIS_SCHEMES = ("redis", "rediss")


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    _shared_client: tuple[Any, Any] | None = None  # (pool, client built on it)

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the event loop's own connection: kombu keeps one per channel
            return super()._create_client(asynchronous=True)
        if self._pool is None and getattr(self.connection, "client", None) is None:
            # The kombu connection is already closed (its transport let go of it) and the pool
            # with it: kombu would build a new pool from that connection's URL and fail with an
            # AttributeError, which a Celery consumer closing after a lost broker treats as
            # unrecoverable (the worker exits). Say what it is: a connection error, which
            # kombu's close ignores and after which the consumer reconnects.
            raise redis.ConnectionError("the broker connection is closed")
        pool = self.pool
        shared = self._shared_client
        if shared is None or shared[0] is not pool:
            # A client holds no connection of its own (it borrows one from the pool per
            # command), so one per pool is safe to share between threads; a new pool (kombu
            # makes one after the connection is reset) gets a new client.
            shared = self._shared_client = (pool, super()._create_client())
        return shared[1]


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel


def transport_for(broker_url: str) -> type | None:
    """genq's transport for a Redis broker URL; None (kombu picks by scheme) for any other."""
    scheme = broker_url.split("://", 1)[0].lower()
    return Transport if scheme in REDIS_SCHEMES else None
