"""genq's Redis transport once its kombu connection is closed: a channel asked for a client
then (kombu's close restores the unacked messages through one) raises a connection error,
which kombu and Celery recover from, not the AttributeError stock kombu raises, which a
Celery consumer closing after a lost broker treats as unrecoverable (the worker exits)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kombu import Connection

from genq.internals import Transport
from tests.support import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture
def connection(tmp_path: Path) -> Iterator[Connection]:
    with RedisServer(tmp_path / "redis") as server:
        conn = Connection(server.url, transport=Transport)
        yield conn
        conn.release()


def test_a_live_channel_builds_its_client(connection: Connection) -> None:
    channel = connection.default_channel
    assert channel._create_client().ping()


def test_a_channel_of_a_closed_connection_raises_a_connection_error(
    connection: Connection,
) -> None:
    channel = connection.default_channel
    channel._create_client()
    # What a consumer's connection looks like when its close runs a second time after a lost
    # broker: the pool dropped, the transport detached from its connection.
    channel._pool = None
    channel.connection.client = None
    with pytest.raises(redis.ConnectionError, match="broker connection is closed"):
        channel._create_client()
    # kombu counts it among the errors its close ignores and Celery reconnects after.
    assert redis.ConnectionError in tuple(Transport.connection_errors)
