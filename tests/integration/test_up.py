"""`genq up`: the whole stack from its Procfile, ready, demonstrated, and gone without a trace."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.runtime_server import FakeRuntime
from tests.support import free_port
from tests.support.processes import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

UP_TIMEOUT_SECONDS = 240


@pytest.fixture
def up_env(tmp_path: Path, fake_runtime: FakeRuntime) -> dict[str, str]:
    # Jobs of ~1.5 s, so the demo's cancel step catches one while it runs.
    fake_runtime.configure(tokens=[f"w{i} " for i in range(30)], token_delay_seconds=0.05)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("GENQ_")}
    return {
        **inherited,
        "PYTHONUNBUFFERED": "1",
        "GENQ_DATA_DIR": str(tmp_path / "genq-up"),  # also marks every process it starts
        "GENQ_RUNTIME_URL": fake_runtime.url,
        "GENQ_DEFAULT_MODEL": "fake-model",
        "GENQ_SHUTDOWN_GRACE_SECONDS": "3",
        # Free ports, so a test never races another server for the defaults.
        "GENQ_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "GENQ_GATEWAY_PORT": str(free_port()),
        "GENQ_FLOWER_PORT": str(free_port()),
        "GENQ_METRICS_PORT": str(free_port()),
    }


def _processes_marked(data_dir: str) -> list[str]:
    """Every live process whose environment names ``data_dir``: what `genq up` started."""
    marker = f"GENQ_DATA_DIR={data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(f"{entry.name}: {(entry / 'cmdline').read_bytes()!r}")
        except OSError:
            continue
    return found


@pytest.fixture
def no_leftovers(up_env: dict[str, str]) -> Iterator[None]:
    yield
    deadline = time.monotonic() + 5
    while (left := _processes_marked(up_env["GENQ_DATA_DIR"])) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"genq up left processes behind: {left}"


def test_up_demo_exit_runs_everything_and_stops_cleanly(
    up_env: dict[str, str], no_leftovers: None
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "genq", "up", "--demo", "--exit"],
        env=up_env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=UP_TIMEOUT_SECONDS,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "genq is up:" in output
    for name in ("worker", "ops", "beat", "flower", "metrics"):
        assert f"| {name}" in output or f"{name} started" in output, name
    assert f"127.0.0.1:{up_env['GENQ_FLOWER_PORT']}" in output
    for step in ("priorities", "stream", "cancel", "webhook", "dead-letter"):
        assert f"demo {step}: ok" in output, output[-6000:]
    assert "genq up: stopped\n" in output
    data_dir = Path(up_env["GENQ_DATA_DIR"])
    assert (data_dir / "run" / "Procfile").read_text().count(": exec ") >= 6
    assert list((data_dir / "redis").glob("appendonlydir/*.aof")), "Redis ran without its AOF"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_up_stops_everything_on_a_signal(
    up_env: dict[str, str], no_leftovers: None, signum: int, tmp_path: Path
) -> None:
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "genq", "up"],
            env=up_env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + UP_TIMEOUT_SECONDS
        while "genq is up:" not in log_path.read_text(errors="replace"):
            assert up.poll() is None, log_path.read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, "genq up never got ready"
            time.sleep(0.2)
        up.send_signal(signum)  # what Ctrl-C (or a service manager) does
        assert up.wait(timeout=90) == 0, log_path.read_text(errors="replace")[-4000:]
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
    assert "genq up: stopped\n" in log_path.read_text(errors="replace")
