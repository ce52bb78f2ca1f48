"""The running stack's file and where ``Settings()`` ranks it: environment and init kwargs,
then the file of a stack that still runs, then the defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genq import constants as c
from genq.settings import Settings
from genq.stack_file import (
    read_running_stack,
    remove_stack_file,
    stack_file_path,
    write_stack_file,
)

DEFAULT_URL = "redis://127.0.0.1:6379/0"
FILE_URL = "redis://127.0.0.1:6390/0"
ENV_URL = "redis://127.0.0.1:6391/0"
INIT_URL = "redis://127.0.0.1:6392/0"
STACK_ENV = {
    "GENQ_REDIS_URL": FILE_URL,
    "GENQ_DEFAULT_MODEL": "stack-model",
    "GENQ_GATEWAY_PORT": "8123",
    "PATH": "/not/a/setting",
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of its own, so the default data dir is ``home/.local/share/genq``."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _default_data_dir(home: Path) -> Path:
    return home / ".local" / "share" / "genq"


@pytest.mark.parametrize(
    ("stack", "env", "init", "redis_url", "model"),
    [
        ("none", {}, {}, DEFAULT_URL, c.EMBEDDED_MODEL_ALIAS),
        ("live", {}, {}, FILE_URL, "stack-model"),
        ("live", {"GENQ_REDIS_URL": ENV_URL}, {}, ENV_URL, "stack-model"),
        ("live", {"GENQ_DEFAULT_MODEL": "env-model"}, {}, FILE_URL, "env-model"),
        ("live", {"GENQ_REDIS_URL": ENV_URL}, {"redis_url": INIT_URL}, INIT_URL, "stack-model"),
        ("dead", {}, {}, DEFAULT_URL, c.EMBEDDED_MODEL_ALIAS),
        ("corrupt", {}, {}, DEFAULT_URL, c.EMBEDDED_MODEL_ALIAS),
    ],
)
def test_precedence_is_environment_then_running_stack_then_defaults(
    home: Path,
    dead_pid: int,
    monkeypatch: pytest.MonkeyPatch,
    stack: str,
    env: dict[str, str],
    init: dict[str, str],
    redis_url: str,
    model: str,
) -> None:
    data_dir = _default_data_dir(home)
    if stack in ("live", "dead"):
        write_stack_file(data_dir, STACK_ENV, os.getpid() if stack == "live" else dead_pid)
    elif stack == "corrupt":
        stack_file_path(data_dir).parent.mkdir(parents=True)
        stack_file_path(data_dir).write_text('{"pid": ')
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    settings = Settings(**init)  # type: ignore[arg-type]

    assert (settings.redis_url, settings.default_model) == (redis_url, model)
    assert settings.data_dir == data_dir
    assert settings.gateway_port == (8123 if stack == "live" else 8000)


def test_the_data_dir_from_the_environment_or_init_says_where_to_look(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    write_stack_file(elsewhere, {**STACK_ENV, "GENQ_DATA_DIR": "/not/here"}, os.getpid())
    assert Settings().redis_url == DEFAULT_URL  # nothing in the default data dir
    assert Settings(data_dir=elsewhere).redis_url == FILE_URL
    monkeypatch.setenv("GENQ_DATA_DIR", str(elsewhere))
    settings = Settings()
    assert settings.redis_url == FILE_URL
    assert settings.data_dir == elsewhere  # never taken from the file


def test_file_is_private_whole_and_holds_only_genq_variables(tmp_path: Path) -> None:
    path = write_stack_file(tmp_path, {**STACK_ENV, "GENQ_ADMIN_KEY": "genq_x"}, os.getpid())
    assert path == tmp_path / "run" / "stack.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["stack.json"]  # no partial file left
    body = json.loads(path.read_text())
    assert body["pid"] == os.getpid()
    assert set(body["env"]) == {
        "GENQ_REDIS_URL",
        "GENQ_DEFAULT_MODEL",
        "GENQ_GATEWAY_PORT",
        "GENQ_ADMIN_KEY",
    }
    running = read_running_stack(tmp_path)
    assert running is not None and running.env["GENQ_ADMIN_KEY"] == "genq_x"


def test_a_pid_reused_after_the_stack_died_is_not_the_stack(tmp_path: Path) -> None:
    path = write_stack_file(tmp_path, STACK_ENV, os.getpid())
    body = json.loads(path.read_text())
    if body["pid_started"] is None:
        pytest.skip("no /proc here: a pid's start time is unknown")
    path.write_text(json.dumps({**body, "pid_started": body["pid_started"] - 1}))
    assert read_running_stack(tmp_path) is None


def test_remove_takes_only_the_file_of_the_given_stack(tmp_path: Path, dead_pid: int) -> None:
    write_stack_file(tmp_path, STACK_ENV, os.getpid())
    remove_stack_file(tmp_path, dead_pid)  # e.g. a second `genq up` that was refused
    assert read_running_stack(tmp_path) is not None
    remove_stack_file(tmp_path, os.getpid())
    assert not stack_file_path(tmp_path).exists()
    remove_stack_file(tmp_path)  # nothing left: no error
