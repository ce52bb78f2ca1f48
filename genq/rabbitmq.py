"""genq on RabbitMQ: the queues' arguments, the dead-letter exchange, the topology a worker
declares at start, the upgrade of queues declared with other arguments, and the broker-side
reads genq needs (queue depths, removing a dead letter's copy).

Chosen by ``GENQ_BROKER_URL=amqp://…`` (``Settings.broker_is_amqp``); Redis stays for chunk
streams, rate limits, leases and replies. docs/brokers.md says why each choice was made.

- Priority: classic queues with ``x-max-priority`` = 10 and the AMQP priority = genq's (9 most
  urgent; Redis's Celery priority is inverted, RabbitMQ's is not). Measured against one queue
  per priority class (``python -m benchmarks brokers``): a Celery worker consumes its queues
  with one ``basic.consume`` each and RabbitMQ hands out deliveries across consumers without
  regard to which queue is more urgent, so a p9 job waited behind the lower queues' deliveries.
- Dead letters: every task queue names ``genq.dlx`` as its dead-letter exchange, bound to
  ``genq.dead_letter``: what the broker decides (a rejected message, a quorum queue's delivery
  limit) lands beside what genq decides (published there by ``genq.dead_letters``).
- Quorum queues (``GENQ_RABBITMQ_QUORUM``): ``x-queue-type=quorum`` with a delivery limit
  instead of ``x-max-priority`` (RabbitMQ 3.10 quorum queues have no priorities).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from amqp.exceptions import NotFound as AmqpNotFound
from amqp.exceptions import PreconditionFailed
from kombu import Connection, Exchange, Queue

from genq import constants as c
from genq.settings import Settings
from schemas import GenqError
from schemas.errors import ErrorCode
from schemas.priority import PRIORITY_MAX

__all__ = [
    "DEAD_LETTER_EXCHANGE",
    "QUORUM_DELIVERY_LIMIT",
    "QueueMismatch",
    "adopt_dead_letters",
    "broker_version",
    "consumer_timeout_warning",
    "dead_letter_queue",
    "declare_topology",
    "ping",
    "prepare_worker_broker",
    "queue_arguments",
    "queue_depths",
    "remove_dead_letters",
    "task_queue",
    "upgrade_queues",
]

log = logging.getLogger(__name__)

DEAD_LETTER_EXCHANGE = "genq.dlx"
# A quorum queue dead-letters a message redelivered this many times (a worker crashing on it
# each time): well above genq's own crash limit, which acts first through the store.
QUORUM_DELIVERY_LIMIT = 20
# Where ``upgrade_queues`` holds a queue's messages while it declares the queue anew.
UPGRADE_SUFFIX = ".genq-upgrade"
# RabbitMQ takes the per-consumer delivery acknowledgement timeout from this version on.
PER_CONSUMER_TIMEOUT_SINCE = (3, 12)


class QueueMismatch(GenqError):
    """A queue exists on the broker with other arguments than genq declares (AMQP 406)."""

    code = ErrorCode.BROKER_UNAVAILABLE
    retryable = False


def queue_arguments(settings: Settings) -> dict[str, Any]:
    """The ``x-`` arguments of every task queue genq declares on RabbitMQ."""
    arguments: dict[str, Any] = {
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "x-dead-letter-routing-key": c.DEAD_LETTER_QUEUE,
    }
    if settings.rabbitmq_quorum:
        arguments["x-queue-type"] = "quorum"
        arguments["x-delivery-limit"] = QUORUM_DELIVERY_LIMIT
    else:
        arguments["x-max-priority"] = PRIORITY_MAX + 1
    return arguments


def task_queue(name: str, settings: Settings) -> Queue:
    """A task queue as declared on RabbitMQ: durable, genq's arguments, bound to an exchange
    of its name. Topic, not direct, on both queue types: Celery's native delayed delivery
    (retries' countdowns on quorum queues) works only through topic exchanges, and switching
    the queue type then changes no exchange. Each consumer asks for a delivery timeout as
    long as genq's longest job (RabbitMQ 3.12+ honours it; older ones ignore the argument and
    apply their consumer_timeout)."""
    return Queue(
        name,
        Exchange(name, type="topic", durable=True),
        routing_key=name,
        durable=True,
        queue_arguments=queue_arguments(settings),
        consumer_arguments={
            "x-consumer-timeout": int(settings.visibility_timeout_seconds * 1000),
        },
    )


def dead_letter_queue() -> Queue:
    """``genq.dead_letter``, bound to the dead-letter exchange the task queues name."""
    return Queue(
        c.DEAD_LETTER_QUEUE,
        Exchange(DEAD_LETTER_EXCHANGE, type="direct", durable=True),
        routing_key=c.DEAD_LETTER_QUEUE,
        durable=True,
    )


def declare_topology(connection: Connection, queues: Iterable[Queue]) -> None:
    """Declare the dead-letter exchange and queue and ``queues``. ``QueueMismatch`` when one
    exists with other arguments (RabbitMQ refuses the redeclaration with 406)."""
    for queue in [dead_letter_queue(), *queues]:
        channel = connection.channel()
        try:
            queue(channel).declare()
        except PreconditionFailed as exc:
            raise QueueMismatch(
                f"queue {queue.name} exists on the broker with other arguments than genq "
                f"declares ({queue.queue_arguments}): {exc.reply_text}. Move its messages to "
                "a queue declared as genq wants with `genq broker upgrade` (docs/brokers.md)"
            ) from exc
        finally:
            _close_quietly(channel)


@dataclass(frozen=True)
class Upgraded:
    queue: str
    moved: int


def upgrade_queues(connection: Connection, queues: Iterable[Queue]) -> list[Upgraded]:
    """Redeclare every queue of ``queues`` whose arguments differ from the broker's, keeping
    its messages: they move to a holding queue, the queue is deleted and declared with genq's
    arguments, and they move back (each move published with confirms before the original is
    acked). A message published to the queue while it does not exist is dropped by the broker;
    its job stays queued in the store and the sweep sends it again after
    ``redispatch_after_seconds``. Queues already as genq declares them are left alone."""
    done = []
    for queue in queues:
        _upgrade_exchange(connection, queue.exchange)
        if _declares_cleanly(connection, queue):
            continue
        holding = Queue(
            queue.name + UPGRADE_SUFFIX,
            exchange="",
            routing_key=queue.name + UPGRADE_SUFFIX,
            durable=True,
            queue_arguments=queue.queue_arguments,
        )
        channel = connection.channel()
        try:
            holding(channel).declare()
            channel.confirm_select()
            moved = _move(channel, queue.name, holding.name)
            while True:  # producers may still add to it: delete only when empty
                try:
                    channel.queue_delete(queue.name, if_empty=True)
                    break
                except PreconditionFailed:
                    channel = _reopen(connection, channel)
                    channel.confirm_select()
                    moved += _move(channel, queue.name, holding.name)
            queue(channel).declare()
            _move(channel, holding.name, queue.name)
            channel.queue_delete(holding.name)
        finally:
            _close_quietly(channel)
        log.warning("upgraded queue %s to genq's arguments (%d message(s) kept)", queue.name, moved)
        done.append(Upgraded(queue.name, moved))
    return done


def _upgrade_exchange(connection: Connection, exchange: Exchange) -> None:
    """An exchange of another type (406) is deleted and declared anew; its queue's binding
    comes back when the queue is declared."""
    if not exchange.name or _declares_cleanly(connection, exchange):
        return
    channel = connection.channel()
    try:
        channel.exchange_delete(exchange.name)
        exchange(channel).declare()
    finally:
        _close_quietly(channel)
    log.warning("declared exchange %s anew as genq declares it", exchange.name)


def _declares_cleanly(connection: Connection, entity: Queue | Exchange) -> bool:
    channel = connection.channel()
    try:
        entity(channel).declare()
        return True
    except PreconditionFailed:
        return False
    finally:
        _close_quietly(channel)


def _move(channel: Any, source: str, target: str) -> int:
    """Move every message of ``source`` to ``target`` (default exchange), body and properties
    (priority, headers…) intact; each is acked on ``source`` once the broker confirmed its
    copy (``channel`` is kombu's AMQP channel: its messages are py-amqp's)."""
    moved = 0
    while True:
        message = channel.basic_get(source, no_ack=False)
        if message is None:
            return moved
        tag = message.delivery_tag
        channel.basic_publish_confirm(message, exchange="", routing_key=target)
        channel.basic_ack(tag)
        moved += 1


def remove_dead_letters(connection: Connection, header: str, ids: set[str]) -> int:
    """Remove the messages of ``genq.dead_letter`` whose ``header`` is one of ``ids``. Every
    message is taken unacked, the matching ones acked and the others handed back, in order."""
    channel = connection.channel()
    removed = 0
    try:
        try:
            channel.queue_declare(c.DEAD_LETTER_QUEUE, passive=True)
        except AmqpNotFound:
            return 0
        kept = []
        while True:
            message = channel.basic_get(c.DEAD_LETTER_QUEUE, no_ack=False)
            if message is None:
                break
            if (message.headers or {}).get(header) in ids:
                channel.basic_ack(message.delivery_tag)
                removed += 1
            else:
                kept.append(message.delivery_tag)
        for tag in kept:
            channel.basic_reject(tag, requeue=True)
    finally:
        _close_quietly(channel)
    return removed


def queue_depths(connection: Connection, names: Iterable[str]) -> dict[str, tuple[int, int]]:
    """``{queue: (ready messages, consumers)}`` for the queues that exist."""
    depths = {}
    for name in names:
        channel = connection.channel()
        try:
            _, ready, consumers = channel.queue_declare(name, passive=True)
            depths[name] = (int(ready), int(consumers))
        except AmqpNotFound:
            pass
        finally:
            _close_quietly(channel)
    return depths


def broker_version(connection: Connection) -> tuple[int, int] | None:
    """The RabbitMQ server's ``(major, minor)``, from what it announced at connect."""
    connection.ensure_connection(max_retries=1)
    properties = getattr(connection.connection, "server_properties", {}) or {}
    raw = properties.get("version", b"")
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    match = re.match(r"(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2])) if match else None


def consumer_timeout_warning(settings: Settings, version: tuple[int, int] | None) -> str | None:
    """What a worker logs at start when a job may outlive the broker's consumer_timeout on a
    broker that ignores genq's per-consumer timeout; None when nothing needs saying."""
    if version is not None and version >= PER_CONSUMER_TIMEOUT_SINCE:
        return None
    longest = settings.visibility_timeout_seconds
    timeout = settings.rabbitmq_consumer_timeout_seconds
    if longest <= timeout:
        return None
    shown = "unknown" if version is None else f"{version[0]}.{version[1]}"
    return (
        f"RabbitMQ {shown} applies its server-wide consumer_timeout "
        f"({timeout:g} s, GENQ_RABBITMQ_CONSUMER_TIMEOUT_SECONDS) to every delivery, and genq "
        f"lets a job run {longest:g} s (GENQ_VISIBILITY_TIMEOUT_SECONDS): a job running longer "
        "gets its worker's channel closed. The job itself still finishes once (its redelivered "
        "message is skipped while the job's lease is live), but raise consumer_timeout in "
        "rabbitmq.conf (compose.yaml's deploy/rabbitmq/rabbitmq.conf sets 12 h) and tell genq "
        "with GENQ_RABBITMQ_CONSUMER_TIMEOUT_SECONDS"
    )


def _reopen(connection: Connection, channel: Any) -> Any:
    _close_quietly(channel)
    return connection.channel()


def _close_quietly(channel: Any) -> None:
    try:
        channel.close()
    except Exception:  # a channel the broker closed (406) is closed already
        log.debug("closing a channel failed", exc_info=True)


def prepare_worker_broker(app: Any, settings: Settings) -> None:
    """At a worker's start on RabbitMQ: declare the dead-letter exchange and queue and every
    task queue (``QueueMismatch`` for one declared with other arguments), and warn when a job
    may outlive the broker's consumer_timeout."""
    with app.connection_for_write() as connection:
        declare_topology(connection, app.conf.task_queues)
        warning = consumer_timeout_warning(settings, broker_version(connection))
    if warning:
        log.warning(warning)


def ping(url: str, timeout_seconds: float) -> None:
    """Connect to RabbitMQ at ``url`` once (an AMQP handshake); raises what kombu raises when
    it does not answer within ``timeout_seconds``."""
    with Connection(url, connect_timeout=timeout_seconds) as connection:
        connection.ensure_connection(max_retries=1)


def adopt_dead_letters(
    connection: Connection,
    header: str,
    known: Callable[[int], int],
    adopt: Callable[[bytes, dict[str, Any]], None],
    limit: int = 100,
) -> int:
    """Give what RabbitMQ dead-lettered into ``genq.dead_letter`` (through ``genq.dlx``) a place
    in genq's index: each message without genq's ``header`` is passed to ``adopt`` (its body
    and its newest ``x-death`` entry; ``adopt`` records it and publishes genq's own copy), then
    acked; genq's own messages are handed back in order. ``known(n)`` says how many of the
    queue's ``n`` messages genq indexed already: when that is all of them, nothing is read."""
    channel = connection.channel()
    adopted = 0
    try:
        try:
            _, ready, _ = channel.queue_declare(c.DEAD_LETTER_QUEUE, passive=True)
        except AmqpNotFound:
            return 0
        if not ready or known(ready) >= ready:
            return 0
        kept = []
        for _ in range(min(int(ready), limit)):  # the messages there now, not genq's new copies
            message = channel.basic_get(c.DEAD_LETTER_QUEUE, no_ack=False)
            if message is None:
                break
            headers = message.headers or {}
            if header in headers:
                kept.append(message.delivery_tag)
                continue
            deaths = headers.get("x-death") or [{}]
            adopt(bytes(message.body), dict(deaths[0]))
            channel.basic_ack(message.delivery_tag)
            adopted += 1
        for tag in kept:
            channel.basic_reject(tag, requeue=True)
    finally:
        _close_quietly(channel)
    return adopted
