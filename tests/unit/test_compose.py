"""compose.yaml, checked without a Docker engine: against the real CLI, Settings and itself.

Values are interpolated the way compose does, from `.env.example`, so the example file is
checked too: it must define every variable compose requires.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml  # type: ignore[import-untyped]

from genq.cli.app import app as genq_app
from genq.settings import Settings
from tests.support.environment import settings_from_env
from workers.flower import flower_argv

REPO = Path(__file__).resolve().parents[2]
GENQ_IMAGE = "genq:local"
ONE_SHOT = frozenset({"migrate", "ollama-pull"})
# Settings whose value is a port a service listens on, by the service that listens.
LISTEN_PORT_SETTING = {
    "gateway": "gateway_port",
    "flower": "flower_port",
    "metrics": "metrics_port",
}
# Services that are not genq's and publish a port: theirs, on the host's loopback by default.
OTHER_PUBLISHED_PORTS = {"rabbitmq": 15672}  # the management UI
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def _env_example() -> dict[str, str]:
    values = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}`, applied recursively."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        current = env.get(name)
        if op in (":?", "?") and not current:
            raise AssertionError(f"compose requires {name} ({arg}) and .env.example lacks it")
        if op in (":-", "-") and not current:
            return arg
        return current or ""

    return _VARIABLE.sub(replace, value.replace("$$", "\0")).replace("\0", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    raw = yaml.safe_load((REPO / "compose.yaml").read_text())
    assert isinstance(raw, dict)
    return dict(_interpolate(raw, _env_example()))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def _genq_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if s.get("image") == GENQ_IMAGE}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(x) for x in command]


def _resolve(argv: list[str]) -> tuple[Any, list[str], list[str]]:
    """Walk `genq` subcommand groups; return the command, its path and its arguments.

    Duck-typed: typer vendors its own click, whose groups are not ``click.Group``.
    """
    command: Any = typer.main.get_command(genq_app)
    path: list[str] = []
    args = list(argv)
    while hasattr(command, "get_command") and args and not args[0].startswith("-"):
        context = command.context_class(command)
        sub = command.get_command(context, args[0])
        if sub is None:
            known = ", ".join(sorted(command.list_commands(context)))
            pytest.fail(
                f"`genq {' '.join([*path, args[0]])}` is not a genq command (yet); the CLI has: "
                f"{known}",
                pytrace=False,
            )
        path.append(args.pop(0))
        command = sub
    return command, path, args


def test_every_genq_service_runs_a_real_genq_command(services: dict[str, dict[str, Any]]) -> None:
    genq_services = _genq_services(services)
    assert {"migrate", "gateway", "worker", "ops-worker", "beat", "flower"} <= genq_services.keys()
    for name, service in genq_services.items():
        argv = _command(service)
        assert argv[0] == "genq", f"service {name} runs {argv[0]!r}, not genq"
        command, path, args = _resolve(argv[1:])
        assert path, f"service {name} runs bare `genq`"
        try:  # parses options and arguments exactly as the real command would
            command.make_context(f"genq {' '.join(path)}", list(args))
        except Exception as exc:
            if not hasattr(exc, "format_message"):  # click's UsageError and its kin
                raise
            pytest.fail(f"service {name}: `{shlex.join(argv)}`: {exc.format_message()}")


def test_every_genq_variable_is_a_setting(services: dict[str, dict[str, Any]]) -> None:
    fields = set(Settings.model_fields)
    seen = {k for s in services.values() for k in _environment(s)} | set(_env_example())
    dockerfile = (REPO / "Dockerfile").read_text()
    seen |= set(re.findall(r"\b(GENQ_[A-Z0-9_]+)=", dockerfile))
    unknown = sorted(k for k in seen if k.startswith("GENQ_") and k[5:].lower() not in fields)
    assert not unknown, f"not genq settings: {unknown}"


def test_genq_services_are_configured_by_settings_alone(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in _genq_services(services).items():
        env = _environment(service)
        assert all(k.startswith("GENQ_") for k in env), f"{name}: {sorted(env)}"
        settings = settings_from_env(env)  # validates every value
        assert settings.database_url is not None, f"{name} would use SQLite inside a container"
        if name == "flower":
            flower_argv(settings)  # listens on 0.0.0.0, so basic auth must be set and well-formed


def test_published_ports_are_the_ports_services_listen_on(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        for mapping in service.get("ports", []):
            container_port = int(str(mapping).rsplit(":", 1)[-1])
            if name in OTHER_PUBLISHED_PORTS:
                assert container_port == OTHER_PUBLISHED_PORTS[name], f"{name}: {mapping}"
                assert str(mapping).startswith("127.0.0.1:"), f"{name} is published beyond loopback"
                continue
            setting = LISTEN_PORT_SETTING.get(name)
            assert setting, f"{name} publishes {mapping} but listens on no known setting"
            settings = settings_from_env(_environment(service))
            assert getattr(settings, setting) == container_port, f"{name}: {mapping}"


def test_volumes_are_declared_and_used(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if not source.startswith((".", "/")):
                used.add(source)
    assert used == declared


def test_dependencies_exist_and_their_conditions_can_be_met(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        for target, spec in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
            else:
                assert condition == "service_completed_successfully"
                assert target in ONE_SHOT and services[target]["restart"] == "no"


def test_long_running_services_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service["restart"] == "no"
            continue
        check = service.get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"


def test_genq_services_wait_for_the_migration(services: dict[str, dict[str, Any]]) -> None:
    for name, service in _genq_services(services).items():
        if name in ("migrate", "flower"):
            continue  # flower reads only the broker
        assert "migrate" in service["depends_on"], name
    assert "postgres" in services["migrate"]["depends_on"]


def test_llm_workers_scale_and_match_runtime_slots(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert int(worker["deploy"]["replicas"]) >= 1
    assert "--concurrency" not in _command(worker)  # defaults to GENQ_RUNTIME_SLOTS
    slots = _environment(worker)["GENQ_RUNTIME_SLOTS"]
    parallel = _environment(services["ollama"])["OLLAMA_NUM_PARALLEL"]
    # The dispatcher bounds the runtime's requests across every replica: the slots are the
    # runtime's, not each replica's.
    assert int(parallel) == int(slots)
    assert _command(services["ollama-pull"]) == ["pull", _environment(worker)["GENQ_DEFAULT_MODEL"]]


def test_genq_processes_run_on_two_or_more_replicas(services: dict[str, dict[str, Any]]) -> None:
    """No single point of failure among genq's own processes (issue 14)."""
    for name in ("gateway", "worker", "ops-worker", "beat"):
        assert int(services[name]["deploy"]["replicas"]) >= 2, name
    assert "GENQ_HOSTNAME" not in _environment(services["worker"])  # each container its own


def test_redis_keeps_an_append_only_file(services: dict[str, dict[str, Any]]) -> None:
    command = _command(services["redis"])
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(str(v).endswith(":/data") for v in services["redis"]["volumes"])


def test_rabbitmq_is_the_broker_and_its_consumer_timeout_covers_the_longest_job(
    services: dict[str, dict[str, Any]],
) -> None:
    """The server-wide consumer_timeout compose ships (RabbitMQ < 3.12 has no other) is what
    genq is told, and no shorter than the longest job genq lets run."""
    settings = settings_from_env(_environment(services["worker"]))
    assert settings.broker_is_amqp and "@rabbitmq:5672/" in settings.effective_broker_url
    conf = (REPO / "deploy" / "rabbitmq" / "genq.conf").read_text()
    match = re.search(r"^consumer_timeout\s*=\s*(\d+)\s*$", conf, re.MULTILINE)
    assert match, "deploy/rabbitmq/genq.conf sets no consumer_timeout"
    timeout_ms = int(match[1])
    assert settings.rabbitmq_consumer_timeout_seconds * 1000 == timeout_ms
    assert timeout_ms >= settings.visibility_timeout_seconds * 1000
    mounts = [str(v) for v in services["rabbitmq"]["volumes"]]
    assert "./deploy/rabbitmq/genq.conf:/etc/rabbitmq/conf.d/90-genq.conf:ro" in mounts
