"""A running genq stack for integration tests: real Redis, real worker processes, a runtime."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from genq.settings import Settings
from producers import GenqClient
from tests.fakes.runtime_server import FakeRuntime
from tests.support import GenqProcess, RedisServer
from tests.support.brokers import BrokerProbe
from tests.support.environment import settings_from_env

FAST_TIMINGS = {
    "GENQ_BACKOFF_BASE_SECONDS": "0.2",
    "GENQ_BACKOFF_CAP_SECONDS": "2",
    "GENQ_MAX_RETRIES": "3",
    "GENQ_LEASE_SECONDS": "3",
    "GENQ_LEASE_RENEW_SECONDS": "1",
    # A slot held by a killed process comes back with the job's lease, not 15 s later.
    "GENQ_FLEET_SLOT_LEASE_SECONDS": "3",
    "GENQ_SWEEP_INTERVAL_SECONDS": "1",
    # Tests of a runtime that stays down want its jobs to fail and retry, not wait for it: a
    # job whose runtime is in cooldown waits 2 s in the backlog, then follows the retry rules.
    # An endpoint in cooldown is probed every half second, so a runtime that came back takes
    # jobs again well before that.
    "GENQ_RUNTIME_WAIT_SECONDS": "2",
    "GENQ_FLEET_BREAKER_COOLDOWN_SECONDS": "0.5",
    "GENQ_STREAM_COALESCE_MS": "10",
    "GENQ_LOG_JSON": "false",
}


@dataclass
class Stack:
    """Env for genq processes plus a client speaking to the same Redis and store."""

    env: dict[str, str]
    start_genq: Callable[..., GenqProcess]
    clients: list[GenqClient] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return settings_from_env(self.env)

    def client(self, tenant: str = "default") -> GenqClient:
        client = GenqClient(self.settings, tenant=tenant)
        self.clients.append(client)
        return client

    def worker(self, *extra: str, name: str = "worker", ready: bool = True) -> GenqProcess:
        proc: GenqProcess = self.start_genq(["worker", "--name", name, *extra], self.env, name=name)
        if ready:
            proc.wait_for_log("ready.", timeout=30)
        return proc

    def ops_worker(self) -> GenqProcess:
        """Consumes webhooks and maintenance (the sweep), never LLM lanes."""
        return self.worker(
            "--lanes",
            "",
            "--queues",
            "webhooks,maintenance",
            "--pool",
            "threads",
            "--concurrency",
            "4",
            name="ops",
        )

    def beat(self) -> GenqProcess:
        return self.start_genq(["beat"], self.env, name="beat")


@pytest.fixture
def fake_runtime() -> Iterator[FakeRuntime]:
    with FakeRuntime() as fake:
        yield fake


# The brokers a broker-facing test runs on: ``@both_brokers`` parametrizes the ``broker``
# fixture, and the stack then uses RabbitMQ (a vhost of the test's own) for "rabbitmq", with
# Redis still there for streams, leases and replies.
BROKERS = ["redis", "rabbitmq"]
both_brokers = pytest.mark.parametrize("broker", BROKERS, indirect=True)


@pytest.fixture
def broker(request: pytest.FixtureRequest) -> str:
    """The stack's broker: "redis" unless the test is parametrized with ``both_brokers``."""
    return str(getattr(request, "param", "redis"))


@pytest.fixture
def stack_env(
    redis_url: str, tmp_data_dir: Path, broker: str, request: pytest.FixtureRequest
) -> dict[str, str]:
    env = {"GENQ_REDIS_URL": redis_url, "GENQ_DATA_DIR": str(tmp_data_dir), **FAST_TIMINGS}
    if broker == "rabbitmq":
        env["GENQ_BROKER_URL"] = request.getfixturevalue("rabbitmq_url")
    return env


@pytest.fixture
def stack(
    stack_env: dict[str, str], start_genq: Callable[..., GenqProcess], fake_runtime: FakeRuntime
) -> Iterator[Stack]:
    """A stack pointed at the fake runtime (model ``fake-model``)."""
    env = {**stack_env, "GENQ_RUNTIME_URL": fake_runtime.url, "GENQ_DEFAULT_MODEL": "fake-model"}
    s = Stack(env=env, start_genq=start_genq)
    yield s
    for client in s.clients:
        client.close()


@pytest.fixture
def broker_probe(stack: Stack, broker: str, request: pytest.FixtureRequest) -> BrokerProbe:
    """The stack's broker seen from the test (queue depths, unacked, raw pushes)."""
    rabbitmq = request.getfixturevalue("rabbitmq_broker") if broker == "rabbitmq" else None
    return BrokerProbe(stack.settings, rabbitmq)


@pytest.fixture
def own_redis(tmp_path: Path, stack: Stack) -> Iterator[RedisServer]:
    """A Redis of this test's own, which it may kill or freeze; the stack points at it."""
    with RedisServer(tmp_path / "own-redis") as server:
        stack.env["GENQ_REDIS_URL"] = server.url
        yield server
        server.send_signal(signal.SIGCONT)  # a frozen one must be able to stop


def kill(server: RedisServer) -> None:
    server.kill()


def freeze(server: RedisServer) -> None:
    """Still listening, never answering: what the socket timeout is for."""
    server.send_signal(signal.SIGSTOP)
