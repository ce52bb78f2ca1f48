"""What a broker-facing test reads or does on the stack's broker, alike on Redis and RabbitMQ.

``BrokerProbe(settings)`` looks at the broker the settings name (``GENQ_BROKER_URL``, or Redis):
how many messages wait in a queue or are delivered and unacked, and putting raw bytes on a
queue as a foreign or broken producer would.
"""

from __future__ import annotations

import json
from urllib.parse import unquote, urlsplit

import redis
from kombu import Connection

from genq.metrics import priority_list_key
from genq.settings import Settings
from schemas.priority import PRIORITY_MAX, PRIORITY_MIN
from tests.support.rabbitmq import RabbitMQBroker, machine_broker

__all__ = ["BrokerProbe"]

# kombu's Redis transport keeps delivered-but-unacked messages in this hash.
REDIS_UNACKED = "unacked"


class BrokerProbe:
    """The stack's broker seen from a test. ``rabbitmq`` is how to run rabbitmqctl on it
    (the machine's node by default), needed only for the unacked count on RabbitMQ."""

    def __init__(self, settings: Settings, rabbitmq: RabbitMQBroker | None = None) -> None:
        self.settings = settings
        self.amqp = settings.broker_is_amqp
        self._rabbitmq = rabbitmq

    def ready(self, queue: str) -> int:
        """Messages waiting in ``queue`` (every priority)."""
        if self.amqp:
            with Connection(self.settings.effective_broker_url) as conn:
                channel = conn.channel()
                try:
                    _, count, _ = channel.queue_declare(queue, passive=True)
                finally:
                    channel.close()
                return int(count)
        with self._redis() as client:
            keys = {priority_list_key(queue, p) for p in range(PRIORITY_MIN, PRIORITY_MAX + 1)}
            return sum(int(client.llen(key)) for key in keys)

    def unacked(self) -> int:
        """Messages delivered to a consumer and not acked yet, over every queue."""
        if not self.amqp:
            with self._redis() as client:
                return int(client.hlen(REDIS_UNACKED))
        ctl = self._rabbitmq or machine_broker()
        assert ctl is not None, "no rabbitmqctl reaches the stack's RabbitMQ"
        vhost = unquote(urlsplit(self.settings.effective_broker_url).path.lstrip("/")) or "/"
        out = ctl.rabbitmqctl(
            "list_queues", "-p", vhost, "messages_unacknowledged", "--formatter", "json", "-q"
        )
        return sum(int(row["messages_unacknowledged"]) for row in json.loads(out or "[]"))

    def push_raw(
        self,
        queue: str,
        body: bytes,
        *,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Put ``body`` on ``queue`` as it is: on Redis the list item itself (kombu's envelope,
        or anything else), on RabbitMQ a message with that body and properties."""
        if not self.amqp:
            with self._redis() as client:
                client.lpush(queue, body)
            return
        with Connection(self.settings.effective_broker_url) as conn:
            channel = conn.channel()
            try:
                message = channel.prepare_message(
                    body, content_type=content_type, headers=headers or {}
                )
                channel.basic_publish(message, exchange="", routing_key=queue)
            finally:
                channel.close()

    def _redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.effective_broker_url, socket_timeout=5.0)
