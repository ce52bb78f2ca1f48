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
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from genq import constants as c

log = logging.getLogger(__name__)


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    _shared_client: tuple[Any, Any] | None = None  # (pool, client built on it)

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
