"""What ``genq up`` runs: the components, their ports, environment and commands. No processes.

The plan is plain data so it can be printed and tested on its own; :mod:`~genq.cli.stack.run`
runs it under the :class:`~genq.cli.stack.supervisor.Supervisor`.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import secrets
import socket
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from genq import constants as c
from genq.settings import Settings

__all__ = ["Component", "Probe", "StackPlan", "free_port", "plan_stack", "port_is_open"]

LOOPBACK = "127.0.0.1"
DEFAULT_REDIS_PORT = 6379
SECRETS_FILE = "local-secrets.env"


@dataclass(frozen=True)
class Probe:
    """How to tell a component is ready: a log line, a Redis PING or an HTTP 200."""

    kind: str  # "log" | "redis" | "http"
    target: str
    timeout_seconds: float = 60.0


@dataclass(frozen=True)
class Component:
    name: str
    argv: tuple[str, ...]
    probe: Probe
    genq_command: str | None = None  # the `genq` subcommand it needs, if any
    url: str | None = None  # shown to the user once ready


@dataclass
class StackPlan:
    settings: Settings  # what the components run with, as the demo must see it too
    env: dict[str, str]  # GENQ_* overrides given to every component
    components: list[Component] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def port_is_open(host: str, port: int, timeout_seconds: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_seconds):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _port(preferred: int, taken: set[int]) -> int:
    """``preferred`` when nothing listens there, else a free one; never one already planned."""
    port = preferred
    while port in taken or port_is_open(LOOPBACK, port):
        port = free_port()
    taken.add(port)
    return port


def _is_loopback(host: str | None) -> bool:
    if host in ("localhost", None):
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _genq(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "genq", *args)


def _local_secrets(data_dir: Path) -> dict[str, str]:
    """Generated once per data dir and reused, so a saved admin key keeps working."""
    path = data_dir / SECRETS_FILE
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip()
    wanted = {
        "GENQ_ADMIN_KEY": f"genq_{secrets.token_urlsafe(24)}",
        "GENQ_FLOWER_BASIC_AUTH": f"admin:{secrets.token_urlsafe(12)}",
        # Signs per-job webhooks sent without their own secret (Standard Webhooks' format).
        "GENQ_WEBHOOK_SECRET": "whsec_"
        + base64.b64encode(secrets.token_bytes(c.WEBHOOK_SECRET_BYTES)).decode(),
    }
    if not wanted.keys() <= values.keys():
        values = {**wanted, **values}
        data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return values


def _redis_component(settings: Settings, plan: StackPlan, taken: set[int]) -> None:
    parts = urlsplit(settings.redis_url)
    configured = "redis_url" in settings.model_fields_set
    if configured and not (_is_loopback(parts.hostname) and parts.port):
        plan.notes.append(f"using the configured Redis at {parts.hostname}")
        return
    if configured and parts.port and port_is_open(LOOPBACK, parts.port):
        plan.notes.append(f"using the Redis already listening on port {parts.port}")
        return
    port = parts.port if configured and parts.port else _port(DEFAULT_REDIS_PORT, taken)
    taken.add(port)
    redis_dir = settings.data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    argv = (
        "redis-server", "--port", str(port), "--bind", LOOPBACK, "--dir", str(redis_dir),
        "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
    )  # fmt: skip
    url = settings.redis_url if configured else f"redis://{LOOPBACK}:{port}/0"
    plan.env["GENQ_REDIS_URL"] = url
    plan.components.append(Component("redis", argv, Probe("redis", url, 30.0), url=url))


def plan_stack(
    settings: Settings, commands: Collection[str], environ: Mapping[str, str] | None = None
) -> StackPlan:
    """Decide ports, URLs and commands; ``commands`` are the `genq` subcommands that exist."""
    environ = os.environ if environ is None else environ
    taken: set[int] = set()
    # The model the stack serves (the embedded runtime's alias, or the configured runtime's
    # model) is what a job without one gets, in the stack and in other shells (its file).
    env = {"GENQ_DATA_DIR": str(settings.data_dir), "GENQ_DEFAULT_MODEL": settings.default_model}
    plan = StackPlan(settings=settings, env=env)
    _redis_component(settings, plan, taken)
    for key, value in _local_secrets(settings.data_dir).items():
        if key not in environ:
            plan.env[key] = value
    if settings.embedded:
        port = _port(settings.embedded_port, taken)
        plan.env["GENQ_EMBEDDED_PORT"] = str(port)
        url = f"http://{LOOPBACK}:{port}"
        # Assembling and loading the model takes a while on a first start.
        probe = Probe("http", f"{url}/v1/models", 300.0)
        plan.components.append(Component("runtime", _genq("runtime"), probe, "runtime", url))
    else:
        plan.notes.append(f"using the LLM runtime at {settings.runtime_url}")
    ports = {
        name: _port(getattr(settings, f"{name}_port"), taken)
        for name in ("gateway", "flower", "metrics")
    }
    plan.env.update({f"GENQ_{name.upper()}_PORT": str(port) for name, port in ports.items()})
    ops = ("--lanes", "", "--queues", "webhooks,maintenance", "--pool", "threads", "--name", "ops")
    base = {
        "gateway": f"http://{LOOPBACK}:{ports['gateway']}",
        "flower": f"http://{LOOPBACK}:{ports['flower']}",
        "metrics": f"http://{LOOPBACK}:{ports['metrics']}",
    }
    wanted = [
        Component("worker", _genq("worker", "--name", "llm"), Probe("log", " ready."), "worker"),
        Component("ops", _genq("worker", *ops), Probe("log", " ready."), "worker"),
        Component("beat", _genq("beat"), Probe("log", "beat: Starting"), "beat"),
        Component(
            "gateway",
            _genq("gateway"),
            Probe("http", f"{base['gateway']}/healthz"),
            "gateway",
            base["gateway"],
        ),
        Component(
            "flower",
            _genq("flower"),
            Probe("http", f"{base['flower']}/healthcheck"),
            "flower",
            base["flower"],
        ),
        Component(
            "metrics",
            _genq("metrics"),
            Probe("http", f"{base['metrics']}/metrics"),
            "metrics",
            f"{base['metrics']}/metrics",
        ),
    ]
    for component in wanted:
        if component.genq_command in commands:
            plan.components.append(component)
        else:
            plan.skipped.append(component.name)
    plan.settings = settings.model_copy(
        update={
            "redis_url": plan.env.get("GENQ_REDIS_URL", settings.redis_url),
            "embedded_port": int(plan.env.get("GENQ_EMBEDDED_PORT", settings.embedded_port)),
            **{f"{name}_port": port for name, port in ports.items()},
        }
    )
    return plan
