"""Putting one claimed reply on its queue, once, however often the outbox asks.

The outbox claims a reply, publishes it, then records it published (``genq.outbox``). A
publisher killed between publishing and recording, or so slow that its claim lapsed, leaves
the sweep to publish the same reply again; so the publish itself must make a repeat a no-op:
that, not the claim, is what emits a reply once. Each broker gets its own strategy behind
``ReplyPublisher``; on RabbitMQ (a later issue) it would be its own module, e.g. a
deduplicating queue keyed on the reply.

On Redis the message goes out with a Lua script that sets a marker for the reply (``SET NX``,
with a TTL) and pushes the message only if the marker was new, atomically: a marker exists
exactly when the message was pushed. kombu's producer cannot do this (its Redis channel pushes
with a plain ``LPUSH`` on its own connection), so genq pushes kombu's envelope itself, byte
for byte as kombu's producer writes it (``reply_envelope``; tested against kombu), and kombu
consumers (``GenqClient.replies()``) and the foreign ones docs/replies.md describes read it
unchanged.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import redis
from kombu.utils.json import dumps

from genq import constants as c
from genq.redis_keys import reply_sent_key
from genq.store.outbox import PendingReply
from schemas import BrokerUnavailable

# KEYS[1] the reply's marker, KEYS[2] the queue's list; ARGV[1] the message, ARGV[2] the
# marker's TTL in seconds. One script, so the marker and the message exist together or not.
_PUSH_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then
    redis.call('LPUSH', KEYS[2], ARGV[1])
    return 1
end
return 0
"""


class ReplyPublisher(Protocol):
    """The broker's way of putting a reply on its queue at most once per outbox row."""

    def publish(self, reply: PendingReply) -> bool:
        """Put ``reply`` on its queue unless it is already there (or was consumed); whether
        it went out now. Raises ``BrokerUnavailable`` when it cannot tell."""
        ...


def reply_envelope(queue: str, record: dict[str, Any], *, delivery_tag: str) -> str:
    """The item kombu's producer pushes on the Redis list ``queue`` for ``record`` (JSON,
    default exchange, persistent, priority 0, one header): docs/replies.md, "Wire format"."""
    body = dumps(record).encode("utf-8")
    return str(
        dumps(
            {
                "body": base64.b64encode(body).decode("ascii"),
                "content-encoding": "utf-8",
                "content-type": "application/json",
                "headers": {"genq-job-id": record.get("id", "")},
                "properties": {
                    "delivery_mode": 2,
                    "delivery_info": {"exchange": "", "routing_key": queue},
                    "priority": 0,
                    "body_encoding": "base64",
                    "delivery_tag": delivery_tag,
                },
            }
        )
    )


@dataclass(frozen=True)
class RedisReplyPublisher:
    """Replies on the Redis broker: the message and the reply's marker in one script."""

    redis: redis.Redis
    marker_seconds: int = c.REPLY_SENT_MARKER_SECONDS

    def publish(self, reply: PendingReply) -> bool:
        message = reply_envelope(reply.queue, reply.payload, delivery_tag=str(uuid.uuid4()))
        push_once = self.redis.register_script(_PUSH_ONCE)  # no I/O: EVALSHA, then EVAL once
        try:
            pushed = push_once(
                keys=[reply_sent_key(reply.job_id, reply.id), reply.queue],
                args=[message, self.marker_seconds],
            )
        except redis.RedisError as exc:
            raise BrokerUnavailable(
                f"could not publish the reply of job {reply.job_id} "
                f"(redis: {exc.__class__.__name__}); the sweep retries"
            ) from exc
        return bool(pushed)
