"""`genq up`: the whole stack, supervised: ready, demonstrated, quiet, self-healing, and gone
without a trace when stopped."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from genq.settings import Settings
from producers import GenqClient
from schemas import JobStatus
from tests.fakes.runtime_server import FakeRuntime
from tests.support import eventually, free_port
from tests.support.environment import process_env, settings_from_env
from tests.support.processes import REPO_ROOT

# Each runs a whole `genq up` (and its demo, kills or signals): up to a minute or so each.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

UP_TIMEOUT_SECONDS = 240
STOP_TIMEOUT_SECONDS = 90
COMPONENTS = ("redis", "worker", "ops", "beat", "gateway", "flower", "metrics")
READY_LINE = re.compile(r"^genq up: (\w+) ready \(pid (\d+)", re.M)
# What `genq up` shows by default, up to and with its summary: its own lines, no component's.
CONSOLE_LINES_MAX = 40
# Jobs recover from a killed worker within seconds: short leases, a sweep every second.
FAST_RECOVERY = {
    "GENQ_LEASE_SECONDS": "3",
    "GENQ_LEASE_RENEW_SECONDS": "1",
    "GENQ_SWEEP_INTERVAL_SECONDS": "1",
    "GENQ_REDISPATCH_AFTER_SECONDS": "3",
    "GENQ_BACKOFF_CAP_SECONDS": "2",
}


@pytest.fixture
def up_env(tmp_path: Path, fake_runtime: FakeRuntime) -> dict[str, str]:
    # Jobs of ~1.5 s, so the demo's cancel step catches one while it runs.
    fake_runtime.configure(tokens=[f"w{i} " for i in range(30)], token_delay_seconds=0.05)
    return {
        **process_env(),
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


def _processes_marked(data_dir: str) -> dict[int, str]:
    """Every live process whose environment names ``data_dir``: what `genq up` started."""
    marker = f"GENQ_DATA_DIR={data_dir}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            marked = marker in (entry / "environ").read_bytes().split(b"\0")
            if marked and _alive(int(entry.name)):
                found[int(entry.name)] = repr((entry / "cmdline").read_bytes())
        except OSError:
            continue
    return found


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    return _state(pid) not in ("Z", None)


def _group_of(pid: int) -> list[int]:
    """The live processes of ``pid``'s process group (it leads one: a main process and its
    pool children, a runtime and its server)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


@dataclass
class Up:
    """A running `genq up` whose console goes to ``console_path``."""

    process: subprocess.Popen[bytes]
    console_path: Path
    env: dict[str, str]

    def console(self) -> str:
        return self.console_path.read_text(errors="replace")

    def tail(self) -> str:
        return self.console()[-6000:]

    def pids(self) -> dict[str, int]:
        """Each component's pid, from the last `ready` line `genq up` printed for it."""
        return {name: int(pid) for name, pid in READY_LINE.findall(self.console())}

    def wait_for(self, text: str, timeout: float = 60) -> None:
        assert eventually(lambda: text in self.console(), timeout=timeout), (
            f"never printed {text!r}:\n{self.tail()}"
        )

    @property
    def data_dir(self) -> Path:
        return Path(self.env["GENQ_DATA_DIR"])

    def client(self) -> GenqClient:
        return GenqClient(settings_from_env(self.env), tenant="default")

    def admin_key(self) -> str:
        secrets = (self.data_dir / "local-secrets.env").read_text().splitlines()
        return next(line.split("=", 1)[1] for line in secrets if line.startswith("GENQ_ADMIN_KEY"))

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)  # what Ctrl-C (or a service manager) does
        return self.process.wait(timeout=STOP_TIMEOUT_SECONDS)


StartUp = Callable[..., Up]


@pytest.fixture
def start_up(up_env: dict[str, str], tmp_path: Path) -> Iterator[StartUp]:
    """Factory: start `genq up *args`, wait for its summary; it and all it started are gone
    after the test (a leftover process fails the test)."""
    started: list[Up] = []

    def start(*args: str, extra_env: dict[str, str | None] | None = None) -> Up:
        """``extra_env`` adds to the environment; a None value removes that variable."""
        merged = {**up_env, **(extra_env or {})}
        env = {k: v for k, v in merged.items() if v is not None}
        console_path = tmp_path / f"up-{len(started)}.console"
        with console_path.open("wb") as console:
            process = subprocess.Popen(
                [sys.executable, "-m", "genq", "up", *args],
                env=env,
                cwd=REPO_ROOT,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        up = Up(process, console_path, env)
        started.append(up)
        ready = eventually(
            lambda: "Ctrl-C stops everything" in up.console() or process.poll() is not None,
            timeout=UP_TIMEOUT_SECONDS,
        )
        assert ready and process.poll() is None, f"genq up never got ready:\n{up.tail()}"
        return up

    yield start
    for up in started:
        if up.process.poll() is None:
            up.process.terminate()
            try:
                up.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                up.process.kill()
                up.process.wait()
    data_dir = up_env["GENQ_DATA_DIR"]
    eventually(lambda: not _processes_marked(data_dir), timeout=10)
    left = _processes_marked(data_dir)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"genq up left processes behind: {left}"


def test_up_demo_exit_runs_everything_and_stops_cleanly(
    up_env: dict[str, str],
    start_up: StartUp,  # not called: its teardown fails the test on a process left behind
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
    assert {name for name, _ in READY_LINE.findall(output)} == set(COMPONENTS)
    assert f"127.0.0.1:{up_env['GENQ_FLOWER_PORT']}" in output
    for step in ("priorities", "stream", "cancel", "webhook", "dead-letter"):
        assert f"demo {step}: ok" in output, output[-6000:]
    assert "genq up: stopped\n" in output
    data_dir = Path(up_env["GENQ_DATA_DIR"])
    assert list((data_dir / "redis").glob("appendonlydir/*.aof")), "Redis ran without its AOF"
    assert not (data_dir / "run" / "stack.json").exists(), "the stack file outlived the stack"


def test_console_is_short_logs_are_full_and_the_next_commands_work_as_printed(
    start_up: StartUp,
) -> None:
    up = start_up(extra_env={"GENQ_STORE_URL": "sqlite:///elsewhere.db"})  # a mistyped setting
    console = up.console()
    assert len(console.splitlines()) <= CONSOLE_LINES_MAX, console
    # Reported once by genq up, not again by each of its components.
    assert console.count("GENQ_STORE_URL is not a genq setting") == 1, console
    assert "superuser" not in console
    assert "| " not in console, "a component's routine output reached the console"
    logs = up.data_dir / "logs"
    for name in COMPONENTS:
        assert (logs / f"{name}.log").stat().st_size > 0, name
    assert " ready." in (logs / "worker.log").read_text()  # what the console left out
    assert "Uvicorn running" in (logs / "gateway.log").read_text()

    # The summary ends with commands to type in another shell: run them exactly as printed,
    # in a shell that knows nothing of this stack but what the summary says.
    summary = console.split("next, in another shell:\n", 1)[1].split("Ctrl-C", 1)[0]
    commands = [line.strip() for line in summary.splitlines() if line.strip()]
    assert len([c for c in commands if not c.startswith("export ")]) == 3, summary
    script = "set -euo pipefail\n" + "\n".join(commands)
    shell_env = {k: v for k, v in up.env.items() if not k.startswith("GENQ_")}
    result = subprocess.run(
        ["bash", "-c", script],
        env=shell_env,
        cwd=up.data_dir.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{script}\n{result.stdout}\n{result.stderr}"
    assert result.stdout.startswith("genq_"), result.stdout  # the key
    assert "w0 w1 w2" in result.stdout  # the job's tokens, watched live
    assert '"finish_reason"' in result.stderr  # the watch's final entry

    assert up.stop() == 0, up.tail()
    assert "genq up: stopped\n" in up.console()
    assert not (up.data_dir / "run" / "stack.json").exists()


# Ctrl-C, a service manager, a closed terminal.
@pytest.mark.parametrize(
    ("signum", "verbose"), [(signal.SIGINT, True), (signal.SIGTERM, False), (signal.SIGHUP, False)]
)
def test_up_stops_everything_on_a_signal(start_up: StartUp, signum: int, verbose: bool) -> None:
    up = start_up(*(["--verbose"] if verbose else []))
    # --verbose brings back every component's output, interleaved and prefixed.
    shows_all = re.search(r"^worker  \| .* ready\.", up.console(), re.M) is not None
    assert shows_all == verbose, up.tail()
    assert up.stop(signum) == 0, up.tail()
    console = up.console()
    assert "genq up: stopped\n" in console
    if verbose:  # Redis stopped last: the workers could still hand their jobs back through it
        lines = console.split("genq up: stopping", 1)[1].splitlines()
        redis_stops = next(
            i for i, line in enumerate(lines) if "SIGTERM" in line and "redis" in line
        )
        assert not any(line.startswith(("worker ", "ops ")) for line in lines[redis_stops:])


def _submit(client: GenqClient, n: int, label: str) -> list[str]:
    chat = {"kind": "chat", "messages": [{"role": "user", "content": label}], "max_tokens": 8}
    return [client.submit(chat).id for _ in range(n)]


def _kill_and_see_it_back(up: Up, name: str, during: Callable[[], None]) -> None:
    before = up.pids()
    victim = before[name]
    group = _group_of(victim)
    os.kill(victim, signal.SIGKILL)
    during()
    up.wait_for(f"genq up: {name} (pid {victim}) was killed by SIGKILL; restarting it in 1 s")
    assert eventually(lambda: up.pids()[name] != victim, timeout=90), up.tail()
    after = up.pids()
    assert {k: v for k, v in after.items() if k != name} == {
        k: v for k, v in before.items() if k != name
    }, "another component was restarted"
    assert all(_alive(pid) for pid in after.values()), after
    # Nothing of the killed process group is left (pool children, a server).
    assert eventually(lambda: not any(_alive(pid) for pid in group), timeout=5), group


@pytest.mark.chaos
def test_killed_worker_and_gateway_come_back_and_every_accepted_job_completes(
    start_up: StartUp,
) -> None:
    up = start_up(extra_env=FAST_RECOVERY)
    client = up.client()
    ids = _submit(client, 4, "before")
    for name in ("worker", "gateway"):
        _kill_and_see_it_back(up, name, lambda: ids.extend(_submit(client, 3, "during")))
    # The gateway answers again.
    gateway = f"http://127.0.0.1:{up.env['GENQ_GATEWAY_PORT']}"
    response = httpx.post(
        f"{gateway}/v1/jobs",
        json={"messages": [{"role": "user", "content": "after"}], "max_tokens": 8},
        headers={"Authorization": f"Bearer {up.admin_key()}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    ids.append(response.json()["id"])
    statuses = {job_id: client.wait(job_id, timeout=120).status for job_id in ids}
    assert set(statuses.values()) == {JobStatus.SUCCEEDED}, statuses
    assert "giving up" not in up.console()
    assert up.stop() == 0, up.tail()


def test_a_component_that_keeps_crashing_is_given_up_and_the_rest_stays_up(
    start_up: StartUp,
) -> None:
    up = start_up()
    before = up.pids()
    port = int(up.env["GENQ_METRICS_PORT"])
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        os.kill(before["metrics"], signal.SIGKILL)
        # Take the port back before the restart: from now on metrics fails at every start.
        assert eventually(lambda: _bound(squatter, port), timeout=5)
        squatter.listen()
        up.wait_for("genq up: giving up on metrics: it crashed 5 times within 60 s", 90)
    console = up.console()
    assert console.count("genq up: metrics restarted") == 4, up.tail()
    assert f"its log: {up.data_dir / 'logs' / 'metrics.log'}" in console
    assert "Address already in use" in (up.data_dir / "logs" / "metrics.log").read_text()
    # The rest kept running, and works.
    others = {k: v for k, v in up.pids().items() if k != "metrics"}
    assert others == {k: v for k, v in before.items() if k != "metrics"}
    assert all(_alive(pid) for pid in others.values())
    client = up.client()
    [job_id] = _submit(client, 1, "still up")
    assert client.wait(job_id, timeout=60).status == JobStatus.SUCCEEDED
    assert up.stop() == 1, up.tail()  # a stack that gave up on a component had errors
    assert "genq up: stopped with errors\n" in up.console()


def _bound(sock: socket.socket, port: int) -> bool:
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded model, assembled once for the session."""
    from workers.embedded import model_file

    data_dir = tmp_path_factory.mktemp("model")
    return model_file(Settings(data_dir=data_dir, embedded_model_path=None))


@pytest.mark.chaos
@pytest.mark.runtime
def test_killed_embedded_runtime_comes_back_and_every_accepted_job_completes(
    start_up: StartUp, model_path: Path
) -> None:
    up = start_up(
        extra_env={
            **FAST_RECOVERY,
            "GENQ_RUNTIME_URL": None,  # the embedded runtime, under `genq up`
            "GENQ_DEFAULT_MODEL": "gemma3-270m",
            "GENQ_EMBEDDED_MODEL_PATH": str(model_path),
            "GENQ_EMBEDDED_PORT": str(free_port()),
            "GENQ_MAX_RETRIES": "20",
        }
    )
    client = up.client()
    ids = _submit(client, 3, "before")
    _kill_and_see_it_back(up, "runtime", lambda: ids.extend(_submit(client, 3, "during")))
    statuses = {job_id: client.wait(job_id, timeout=180).status for job_id in ids}
    assert set(statuses.values()) == {JobStatus.SUCCEEDED}, statuses
    assert up.stop() == 0, up.tail()
