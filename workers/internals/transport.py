"""kombu's Redis transport, hardened: an item that is not even a JSON envelope is quarantined.

Stock kombu decodes each popped item with ``loads`` and lets the error escape, which stops the
Celery worker ("Unrecoverable error: JSONDecodeError") and loses the item. genq moves such an
item, bytes intact, to a quarantine list; the sweep turns it into a dead letter.

It extends the transport every genq app uses (``genq.internals.transport``: one client per
connection pool, where stock kombu builds a new ``redis.Redis`` for every ack, unacked-index
write and fanout publish).
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
from genq.internals import transport as genq_transport
from workers.internals.deferred import DeferredWrites

log = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):  # type: ignore[misc]
    """kombu's record of delivered-but-unacked messages, written without waiting.

    Stock kombu writes it (on delivery) and clears it (on ack) each in a MULTI/EXEC round
    trip that the worker's main process waits for: a third of its CPU, and two waits between
    one job and the next. genq sends the same two commands over one connection and reads
    Redis's answers at the next send (see ``deferred``). The record matters to recovery only
    (a message unacked for longer than the visibility timeout, or restored at shutdown),
    which settles what is in flight first. A write that could not be sent, was refused or lost
    its answer is done again kombu's way, which raises what kombu would raise.
    """

    def append(self, message: Any, delivery_tag: str) -> None:
        writes = self.channel.deferred_writes()
        if writes is None:
            super().append(message, delivery_tag)
            return
        delivery = message.delivery_info
        payload = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        try:
            writes.send(
                ("ZADD", self.unacked_index_key, time.time(), delivery_tag),
                ("HSET", self.unacked_key, delivery_tag, payload),
                redo=lambda: self._record(message, delivery_tag, payload),
            )
        except Exception:
            super().append(message, delivery_tag)
            return
        virtual.QoS.append(self, message, delivery_tag)

    def _record(self, message: Any, delivery_tag: str, payload: str) -> None:
        if delivery_tag not in self._delivered or delivery_tag in self._dirty:
            return  # acked meanwhile (that ack clears the record either way)
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: time.time()})
            pipe.hset(self.unacked_key, delivery_tag, payload)
            pipe.execute()

    def ack(self, delivery_tag: str) -> None:
        writes = self.channel.deferred_writes()
        if writes is None:
            super().ack(delivery_tag)
            return
        try:
            writes.send(
                ("ZREM", self.unacked_index_key, delivery_tag),
                ("HDEL", self.unacked_key, delivery_tag),
                redo=lambda: self._remove_from_indices(delivery_tag).execute(),
            )
        except Exception:
            super().ack(delivery_tag)
            return
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        self.channel.settle_deferred_writes()  # it reads and clears the record over another
        super().reject(delivery_tag, requeue)

    def restore_unacked(self, client: Any = None) -> None:
        self.channel.settle_deferred_writes()
        super().restore_unacked(client)

    def restore_visible(self, *args: Any, **kwargs: Any) -> None:
        self.channel.settle_deferred_writes()
        super().restore_visible(*args, **kwargs)


class Channel(genq_transport.Channel):
    QoS = QoS
    _deferred: DeferredWrites | None = None

    def deferred_writes(self) -> DeferredWrites | None:
        """The connection for the unacked record's writes; None once closing (or when a
        global key prefix is set, which raw commands would miss): then kombu's own way."""
        if self._closing or self.global_keyprefix:
            return None
        if self._deferred is None:
            self._deferred = DeferredWrites(self.pool)
        return self._deferred

    def settle_deferred_writes(self) -> None:
        if self._deferred is not None:
            self._deferred.settle()

    def close(self) -> None:
        self.settle_deferred_writes()  # before kombu restores the unacked from the record
        super().close()
        deferred, self._deferred = self._deferred, None
        if deferred is not None:
            deferred.close()

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


class Transport(genq_transport.Transport):
    Channel = Channel
