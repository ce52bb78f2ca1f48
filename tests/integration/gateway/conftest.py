"""A real gateway (``genq gateway``, uvicorn on a free port) in front of the test stack."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from genq.settings import Settings
from genq.store import build_engine
from producers.api_keys import ApiKeyStore
from tests.integration.conftest import Stack
from tests.support import GenqProcess, eventually, free_port
from tests.support.environment import process_env, settings_from_env

ADMIN_KEY = "test-admin-key-0123456789"
START_TIMEOUT_SECONDS = 20.0


@dataclass
class Gateway:
    """A running gateway: its URL, the env it runs with, and helpers to talk to it."""

    url: str
    env: dict[str, str]
    process: GenqProcess
    _clients: list[httpx.Client] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return settings_from_env(self.env)

    def key(self, tenant: str = "acme", *, admin: bool = False) -> str:
        """A fresh API key for ``tenant``, written straight into the gateway's store (which
        the gateway migrated at its start)."""
        engine = build_engine(self.settings.store_url)
        try:
            _row, plaintext = ApiKeyStore(engine).create(tenant, admin=admin)
        finally:
            engine.dispose()
        return plaintext

    def client(self, key: str | None = None, timeout: float = 10.0) -> httpx.Client:
        """An httpx client for the gateway, sending ``key`` as its bearer token."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()


def wait_until_serving(url: str, process: GenqProcess) -> None:
    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    up = eventually(lambda: healthy() or not process.running, START_TIMEOUT_SECONDS, interval=0.05)
    if not (up and process.running):
        raise AssertionError(f"gateway did not start; log tail:\n{process.log_tail()}")


def run_openai_example(gateway: Gateway, key: str, example: Path) -> str:
    """Run a docs example as a user would (the ``openai`` SDK reads ``OPENAI_BASE_URL`` and
    ``OPENAI_API_KEY``) against ``gateway``; its output, once it exited 0."""
    env = {"OPENAI_BASE_URL": f"{gateway.url}/v1", "OPENAI_API_KEY": key}
    out = subprocess.run(
        [sys.executable, str(example)],
        env=process_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def gateway_env(base: dict[str, str], **extra: str) -> dict[str, str]:
    port = free_port()
    return {
        **base,
        "GENQ_GATEWAY_PORT": str(port),
        "GENQ_ADMIN_KEY": ADMIN_KEY,
        **{f"GENQ_{k.upper()}": v for k, v in extra.items()},
    }


class GatewayStarter:
    """``starter(rate_limit_per_second="2", ...)`` starts a gateway whose settings are the
    stack's plus these (as ``GENQ_<NAME>``); the stack's ``start_genq`` stops it."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.started: list[Gateway] = []

    def __call__(self, **extra: str) -> Gateway:
        env = gateway_env(self.stack.env, **extra)
        name = f"gateway-{len(self.started)}"
        process = self.stack.start_genq(["gateway"], env, name=name)
        url = f"http://127.0.0.1:{env['GENQ_GATEWAY_PORT']}"
        wait_until_serving(url, process)
        gateway = Gateway(url=url, env=env, process=process)
        self.started.append(gateway)
        return gateway

    def close(self) -> None:
        for gateway in self.started:
            gateway.close()


@pytest.fixture
def start_gateway(stack: Stack) -> Iterator[GatewayStarter]:
    """Start gateways in front of the fake-runtime stack."""
    starter = GatewayStarter(stack)
    yield starter
    starter.close()


@pytest.fixture
def gateway(start_gateway: GatewayStarter) -> Gateway:
    """A gateway with default limits in front of the stack (fake runtime, no worker yet)."""
    return start_gateway()
