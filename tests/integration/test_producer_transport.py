"""The Redis transport every genq app uses (``genq.internals.transport``) against a real Redis:
one client per connection pool, a new one on a new pool, and a broker that goes away and comes
back is published to again."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from kombu.utils.imports import symbol_by_name

from genq.celery_app import create_app
from genq.dispatch import publish_job
from genq.internals import Transport
from genq.metrics import priority_list_key
from genq.settings import Settings
from schemas import BrokerUnavailable, JobKind
from tests.support import RedisServer

pytestmark = pytest.mark.integration

LANE = "interactive"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def app(broker: RedisServer, tmp_path: Path) -> Iterator[Celery]:
    app = create_app(Settings(redis_url=broker.url, data_dir=tmp_path / "data"))
    yield app
    app.close()


def publish(app: Celery) -> str:
    # The broker publish itself (what the fleet dispatcher calls with a slot, and producers
    # with GENQ_FLEET_DISPATCH=false), not send_job: that waits in the backlog for a slot.
    job_id = str(uuid.uuid4())
    publish_job(
        app, app.genq_settings, job_id=job_id, kind=JobKind.CHAT, tenant="t", lane=LANE, priority=5
    )
    return job_id


def queued(broker: RedisServer, app: Celery) -> int:
    with broker.client() as client:
        return int(client.llen(priority_list_key(app.genq_settings.queue_for(LANE), 5)))


def test_a_producer_app_on_redis_uses_genqs_transport_and_builds_one_client(
    app: Celery, broker: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert symbol_by_name(app.conf.broker_transport) is Transport
    publish(app)  # connects, declares the lane's queue
    built: list[Any] = []
    original = redis.Redis.__init__

    def counting(self: redis.Redis, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "__init__", counting)
    for _ in range(20):
        publish(app)
    assert built == []  # stock kombu: one per message (for its LPUSH)
    assert queued(broker, app) == 21


def test_a_new_pool_gets_a_new_client(app: Celery) -> None:
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        first = channel._create_client()
        assert channel._create_client() is first
        assert first.connection_pool is channel.pool
        assert channel._create_client(asynchronous=True) is not first  # the event loop's own
        channel._disconnect_pools()  # what kombu does when the connection is reset
        second = channel._create_client()
        assert second is not first and second.connection_pool is channel.pool


def test_a_broker_that_went_away_is_published_to_again_when_back(
    app: Celery, broker: RedisServer
) -> None:
    publish(app)
    broker.kill()
    with pytest.raises(BrokerUnavailable):
        publish(app)
    broker.restart()  # same port, empty: the message before the crash was not persisted
    publish(app)
    assert queued(broker, app) == 1


def test_any_other_broker_keeps_kombus_transport(tmp_path: Path) -> None:
    app = create_app(Settings(redis_url="amqp://guest@127.0.0.1:1//", data_dir=tmp_path))
    assert app.conf.broker_transport is None
