"""`genq up`'s plan: which components, on which ports, with what commands. No processes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from genq.cli.stack.plan import plan_stack
from genq.settings import Settings

ALL = {"worker", "beat", "runtime", "gateway", "flower", "metrics"}


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_embedded_stack_has_every_component_on_distinct_ports(tmp_path: Path) -> None:
    plan = plan_stack(Settings(data_dir=tmp_path), ALL, environ={})
    names = [c.name for c in plan.components]
    assert names == ["redis", "runtime", "worker", "ops", "beat", "gateway", "flower", "metrics"]
    ports = [plan.env[k] for k in plan.env if k.endswith("_PORT")]
    assert len(ports) == len(set(ports)) == 4  # embedded, gateway, flower, metrics
    assert plan.settings.redis_url == plan.env["GENQ_REDIS_URL"]
    assert plan.settings.embedded_port == int(plan.env["GENQ_EMBEDDED_PORT"])
    argv = {c.name: c.argv for c in plan.components}
    assert argv["redis"][0] == "redis-server"
    assert argv["redis"][argv["redis"].index("--appendonly") + 1] == "yes"
    ops = argv["ops"]
    assert ops[ops.index("--lanes") + 1 : ops.index("--pool") + 2] == (
        "",
        "--queues",
        "webhooks,maintenance",
        "--pool",
        "threads",
    )


def test_external_runtime_is_used_not_started(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, runtime_url="http://127.0.0.1:11434")
    plan = plan_stack(settings, ALL, environ={})
    assert "runtime" not in [c.name for c in plan.components]
    assert any("11434" in note for note in plan.notes)


def test_missing_commands_are_skipped_by_name(tmp_path: Path) -> None:
    plan = plan_stack(Settings(data_dir=tmp_path), ALL - {"gateway", "flower"}, environ={})
    assert plan.skipped == ["gateway", "flower"]
    assert {"gateway", "flower"}.isdisjoint(c.name for c in plan.components)


def test_busy_preferred_port_is_replaced(tmp_path: Path, busy_port: int) -> None:
    plan = plan_stack(Settings(data_dir=tmp_path, flower_port=busy_port), ALL, environ={})
    assert plan.settings.flower_port != busy_port
    assert plan.env["GENQ_FLOWER_PORT"] == str(plan.settings.flower_port)


def test_configured_redis_that_answers_is_reused(tmp_path: Path, busy_port: int) -> None:
    url = f"redis://127.0.0.1:{busy_port}/2"
    plan = plan_stack(Settings(data_dir=tmp_path, redis_url=url), ALL, environ={})
    assert "redis" not in [c.name for c in plan.components]
    assert plan.settings.redis_url == url


def test_generated_secrets_are_kept_and_not_overriding_the_environment(tmp_path: Path) -> None:
    first = plan_stack(Settings(data_dir=tmp_path), ALL, environ={})
    again = plan_stack(Settings(data_dir=tmp_path), ALL, environ={})
    assert first.env["GENQ_ADMIN_KEY"] == again.env["GENQ_ADMIN_KEY"]
    assert first.env["GENQ_ADMIN_KEY"].startswith("genq_")
    assert (tmp_path / "local-secrets.env").stat().st_mode & 0o077 == 0
    mine = plan_stack(Settings(data_dir=tmp_path), ALL, environ={"GENQ_ADMIN_KEY": "x"})
    assert "GENQ_ADMIN_KEY" not in mine.env
