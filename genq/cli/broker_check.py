"""Telling a command's user, within seconds, that the broker cannot be reached, and where.

A one-shot command (``genq submit``, ``genq stats``…) PINGs the broker first with short
timeouts: kombu's publish retries and its untimed socket reads could otherwise keep it waiting
far longer (forever, for a Redis that accepts connections and never answers).
"""

from __future__ import annotations

import redis
from kombu.exceptions import OperationalError

from genq import constants as c
from genq.logs import redact_text
from genq.settings import Settings
from genq.stack_file import stack_file_path
from schemas import BrokerUnavailable

__all__ = ["as_broker_unavailable", "require_broker"]

REASON_CHARS = 200


def require_broker(settings: Settings) -> None:
    """Raise ``BrokerUnavailable`` unless the broker answers a PING within a few seconds (and
    Redis too, when RabbitMQ is the broker: genq needs both)."""
    if settings.broker_is_amqp:
        _require_rabbitmq(settings)
    client = redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=c.REDIS_CONNECT_TIMEOUT_SECONDS,
        socket_timeout=c.REDIS_CONNECT_TIMEOUT_SECONDS,
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        raise BrokerUnavailable(_message(settings, exc)) from exc
    finally:
        client.close()


def _require_rabbitmq(settings: Settings) -> None:
    from genq import rabbitmq  # kombu: only for a RabbitMQ broker

    url = settings.effective_broker_url
    try:
        rabbitmq.ping(url, c.REDIS_CONNECT_TIMEOUT_SECONDS)
    except Exception as exc:  # kombu and py-amqp raise many types
        reason = " ".join(str(exc).split())[:REASON_CHARS] or exc.__class__.__name__
        raise BrokerUnavailable(
            f"cannot reach RabbitMQ at {redact_text(url)} ({redact_text(reason)}); is it "
            "running? (set by GENQ_BROKER_URL)"
        ) from exc


def as_broker_unavailable(exc: BaseException, settings: Settings) -> BrokerUnavailable | None:
    """A Redis or kombu connection failure as ``BrokerUnavailable``; None for anything else."""
    if not isinstance(exc, redis.ConnectionError | redis.TimeoutError | OperationalError):
        return None
    return BrokerUnavailable(_message(settings, exc))


def _message(settings: Settings, exc: BaseException) -> str:
    reason = " ".join(str(exc).split())[:REASON_CHARS] or exc.__class__.__name__
    where = redact_text(settings.redis_url)
    if "redis_url" in settings.model_fields_set:
        hint = "is it running? (set by GENQ_REDIS_URL, or by a running `genq up`)"
    else:
        file = stack_file_path(settings.data_dir)
        hint = f"no running `genq up` recorded one in {file}: start one, or set GENQ_REDIS_URL"
    return f"cannot reach the broker at {where} ({redact_text(reason)}); {hint}"
