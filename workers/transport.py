"""kombu's Redis transport, hardened: an item that is not even a JSON envelope is quarantined.

Stock kombu decodes each popped item with ``loads`` and lets the error escape, which stops the
Celery worker ("Unrecoverable error: JSONDecodeError") and loses the item. genq moves such an
item, bytes intact, to a quarantine list; the sweep turns it into a dead letter.

It also reuses one client object per connection pool where stock kombu builds a new
``redis.Redis`` for every ack, unacked-index write and fanout publish (with redis-py 8 that
constructor was the worker main process's biggest single cost).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

from genq import constants as c
from genq.deferred import DeferredWrites

log = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):  # type: ignore[misc]
    """kombu's record of delivered-but-unacked messages, written without waiting.

    Stock kombu writes it (on delivery) and clears it (on ack) each in a MULTI/EXEC round
    trip that the worker's main process waits for: a third of its CPU, and two waits between
    one job and the next. genq sends the same two commands and reads Redis's answers at the
    next send. The record only matters to a later recovery scan (messages unacked for longer
    than the visibility timeout), which cannot see a write in flight; if Redis cannot be
    reached, this falls back to kombu's own round trip.
    """

    def append(self, message: Any, delivery_tag: str) -> None:
        if self.channel.global_keyprefix:  # raw commands would miss the prefix: kombu's way
            super().append(message, delivery_tag)
            return
        delivery = message.delivery_info
        payload = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        try:
            self.channel.deferred_writes.send(
                ("ZADD", self.unacked_index_key, time.time(), delivery_tag),
                ("HSET", self.unacked_key, delivery_tag, payload),
            )
        except Exception:
            super().append(message, delivery_tag)
            return
        virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        if self.channel.global_keyprefix:
            super().ack(delivery_tag)
            return
        try:
            self.channel.deferred_writes.send(
                ("ZREM", self.unacked_index_key, delivery_tag),
                ("HDEL", self.unacked_key, delivery_tag),
            )
        except Exception:
            super().ack(delivery_tag)
            return
        virtual.QoS.ack(self, delivery_tag)

    def restore_unacked(self, client: Any = None) -> None:
        self.channel.deferred_writes.settle()  # the records it restores from are all written
        super().restore_unacked(client)


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    QoS = QoS
    _shared_client: tuple[Any, Any] | None = None  # (pool, client built on it)
    _deferred_writes: tuple[Any, DeferredWrites] | None = None  # (pool, writes on it)

    @property
    def deferred_writes(self) -> DeferredWrites:
        pool = self.pool
        deferred = self._deferred_writes
        if deferred is None or deferred[0] is not pool:
            deferred = self._deferred_writes = (pool, DeferredWrites(pool))
        return deferred[1]

    def close(self) -> None:
        deferred = self._deferred_writes
        if deferred is not None:
            deferred[1].settle()
        super().close()
        if deferred is not None:
            deferred[1].close()

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        pool = self.pool
        shared = self._shared_client
        if shared is None or shared[0] is not pool:
            # A client holds no connection of its own (it borrows one from the pool per
            # command), so one per pool is safe to share between threads.
            shared = self._shared_client = (pool, super()._create_client())
        return shared[1]

    def _brpop_read(self, **options: Any) -> bool:
        # Mirrors kombu.transport.redis.Channel._brpop_read (kombu 5.6/5.7) except for the
        # decode step.
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if not dest__item:
                raise kombu_redis.Empty()
            dest, item = dest__item
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            try:
                message = loads(bytes_to_str(item))
            except (ValueError, UnicodeDecodeError) as exc:
                self.client.lpush(c.QUARANTINE_KEY, item)
                log.warning("quarantined an undecodable item from %s: %s", dest, exc)
                return True
            self.connection._deliver(message, dest)
            return True
        finally:
            self._in_poll = None
            flush = getattr(self, "_flush_brpop_reauth", None)
            if flush is not None:
                flush()


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel
