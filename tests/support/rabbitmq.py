"""RabbitMQ for the tests: the machine's broker when it answers, else a private node; each test
gets a vhost of its own on it.

A machine may run RabbitMQ on 127.0.0.1:5672 (Debian's ``rabbitmq-server``, which
``scripts/install.sh`` installs): the tests then use it through ``rabbitmqctl``, adding a vhost
per test and deleting it after. Where nothing answers there, ``RabbitMQServer`` starts a private
node (its own ports, data and Erlang cookie under a temporary directory), as the tests start
their own redis-server; it is also what a test that needs server settings of its own starts
(the consumer timeout).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kombu import Connection

from tests.support.ports import free_port, port_is_open
from tests.support.processes import ManagedProcess

__all__ = [
    "MACHINE_AMQP_PORT",
    "RabbitMQBroker",
    "RabbitMQNotFound",
    "RabbitMQServer",
    "machine_broker",
]

MACHINE_AMQP_PORT = 5672
USER = "guest"
PASSWORD = "guest"
# Debian puts the real scripts here; /usr/sbin's wrappers switch to the rabbitmq user.
DEBIAN_SCRIPTS = Path("/usr/lib/rabbitmq/bin")
CTL_TIMEOUT_SECONDS = 60.0


class RabbitMQNotFound(RuntimeError):
    """No RabbitMQ answers and none can be started here."""


def _script(name: str, *, private: bool) -> str | None:
    """A RabbitMQ script: for a private node the real one (run as us), for the machine's the
    wrapper on PATH (which runs it as the broker's user, with its Erlang cookie)."""
    if private and (DEBIAN_SCRIPTS / name).exists():
        return str(DEBIAN_SCRIPTS / name)
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/lib/rabbitmq/bin")


@dataclass
class RabbitMQBroker:
    """A RabbitMQ node the tests may add vhosts to: its AMQP port and how to run rabbitmqctl."""

    port: int
    ctl: Sequence[str]
    env: Mapping[str, str] | None = None

    def url(self, vhost: str) -> str:
        return f"amqp://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{vhost}"

    def rabbitmqctl(self, *args: str) -> str:
        out = subprocess.run(
            [*self.ctl, *args],
            capture_output=True,
            text=True,
            timeout=CTL_TIMEOUT_SECONDS,
            env=dict(self.env) if self.env is not None else None,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {out.stderr or out.stdout}")
        return out.stdout

    def add_vhost(self, prefix: str = "genq-test") -> str:
        """A new vhost the guest user may use fully; its URL."""
        vhost = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.rabbitmqctl("add_vhost", vhost)
        self.rabbitmqctl("set_permissions", "-p", vhost, USER, ".*", ".*", ".*")
        return vhost

    def delete_vhost(self, vhost: str) -> None:
        self.rabbitmqctl("delete_vhost", vhost)

    def answers(self) -> bool:
        if not port_is_open(self.port):
            return False
        try:
            with Connection(self.url(""), connect_timeout=2) as conn:
                conn.ensure_connection(max_retries=1)
            return True
        except Exception:
            return False


def machine_broker() -> RabbitMQBroker | None:
    """The machine's RabbitMQ on 127.0.0.1:5672, if it answers and rabbitmqctl reaches it."""
    ctl = _script("rabbitmqctl", private=False)
    if ctl is None or not port_is_open(MACHINE_AMQP_PORT):
        return None
    broker = RabbitMQBroker(port=MACHINE_AMQP_PORT, ctl=[ctl])
    try:
        broker.rabbitmqctl("list_vhosts")
    except (RuntimeError, OSError, subprocess.TimeoutExpired):
        return None
    return broker


class RabbitMQServer(ManagedProcess):
    """A private RabbitMQ node on free loopback ports, its files under ``tmpdir``.

    ``config`` lines go to its rabbitmq.conf (e.g. ``consumer_timeout = 3000``), ``advanced``
    is the Erlang terms of its advanced.config (e.g. ``[{rabbit, [{channel_tick_interval,
    500}]}].``).
    """

    name = "rabbitmq-server"

    def __init__(
        self,
        tmpdir: Path,
        *,
        config: Sequence[str] = (),
        advanced: str = "[].",
        ready_timeout: float = 120.0,
    ) -> None:
        server = _script("rabbitmq-server", private=True)
        ctl = _script("rabbitmqctl", private=True)
        if server is None or ctl is None:
            raise RabbitMQNotFound(
                "no rabbitmq-server here: scripts/install.sh installs Debian's rabbitmq-server"
            )
        self.port = free_port()
        self.tmpdir = tmpdir
        self.ready_timeout = ready_timeout
        self.nodename = f"genqtest{self.port}@localhost"
        tmpdir.mkdir(parents=True, exist_ok=True)
        home = tmpdir / "home"
        home.mkdir(exist_ok=True)
        (tmpdir / "rabbitmq.conf").write_text("\n".join(["loopback_users = none", *config]) + "\n")
        (tmpdir / "advanced.config").write_text(advanced + "\n")
        (tmpdir / "enabled_plugins").write_text("[].\n")
        self.node_env = {
            **os.environ,
            "HOME": str(home),  # its Erlang cookie, shared with our rabbitmqctl
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(tmpdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(tmpdir / "log"),
            "RABBITMQ_CONFIG_FILE": str(tmpdir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(tmpdir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(tmpdir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(tmpdir / "rabbitmq.pid"),
            "RABBITMQ_LOGS": "-",
        }
        self.broker = RabbitMQBroker(
            port=self.port, ctl=[ctl, "-n", self.nodename], env=self.node_env
        )
        super().__init__([server], log_path=tmpdir / "rabbitmq.log", env=self.node_env)

    def url(self, vhost: str = "") -> str:
        return self.broker.url(vhost)

    def _wait_ready(self) -> None:
        self._poll_until(self.broker.answers, self.ready_timeout)
