"""Real processes for integration tests: loopback only, logged to a file, always stopped.

Each helper is built stopped; ``start()`` (or ``with``) starts it and waits until it is usable.
``stop()`` asks politely (SIGTERM to the main process), then SIGKILLs the whole process group,
so no child (Celery pool process, llama.cpp server) outlives a test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from genq.settings import Settings
from schemas.errors import TransientError
from tests.support.environment import process_env
from tests.support.ports import free_port
from tests.support.postgres import PostgresCluster, PostgresNotFound
from workers.embedded import model_file, runtime_command, wait_until_ready

__all__ = [
    "EmbeddedRuntime",
    "GenqProcess",
    "ManagedProcess",
    "PostgresCluster",
    "PostgresNotFound",
    "RedisServer",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
POLL_SECONDS = 0.05
LOG_TAIL_LINES = 40
# Orphans are reaped by init; an init that never reaps would otherwise hold us forever.
GROUP_EXIT_SECONDS = 5.0


class ManagedProcess:
    """A subprocess in its own process group whose output goes to ``log_path``."""

    name = "process"

    def __init__(
        self,
        command: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.command = list(command)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._terminated = False

    def start(self) -> Self:
        """Start the process and wait until it is ready; a failed start leaves nothing running."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self._log_offset = log_file.tell()
            self._terminated = False
            self._process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the main process only (not its children)."""
        if self.running:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        """SIGTERM the main process (once: a second one means "now" to Celery) without waiting,
        so several processes can shut down at the same time before each is ``stop()``ped."""
        if self.running and not self._terminated:
            assert self._process is not None
            self._process.send_signal(signal.SIGTERM)
            self._terminated = True

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the main process, wait up to ``timeout`` s, then SIGKILL the whole group."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            self.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout)
        return _kill_group(process)

    def kill(self) -> int | None:
        """SIGKILL the whole process group at once, like a crash of the machine it runs on."""
        process = self._process
        if process is None:
            return None
        return _kill_group(process)

    def restart(self) -> Self:
        """Stop (if still running) and start again with the same command, port and files."""
        self.stop()
        return self.start()

    def log_text(self, *, whole: bool = False) -> str:
        """The log written since the last start (or all of it with ``whole=True``)."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log_file:
            log_file.seek(0 if whole else self._log_offset)
            return log_file.read().decode(errors="replace")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log_text(whole=True).splitlines()[-lines:])

    def wait_for_log(self, substring: str, timeout: float = 30.0) -> str:
        """Wait until a line containing ``substring`` appears in the log since the last start."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_text().splitlines():
                if substring in line:
                    return line
            if not self.running:
                raise AssertionError(
                    f"{self.name} exited ({self.returncode}) without logging {substring!r}; "
                    f"log tail:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name} did not log {substring!r} within {timeout:g} s; "
                    f"log tail:\n{self.log_tail()}"
                )
            time.sleep(POLL_SECONDS)

    def __enter__(self) -> Self:
        return self if self.running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        """Subclasses block here until the process can serve."""

    def _poll_until(self, is_ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not is_ready():
            if not self.running:
                raise RuntimeError(
                    f"{self.name} exited ({self.returncode}) before it was ready; "
                    f"log tail:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name} not ready within {timeout:g} s; log tail:\n{self.log_tail()}"
                )
            time.sleep(POLL_SECONDS)


class GenqProcess(ManagedProcess):
    """``python -m genq *argv`` (a worker, beat, the gateway, …) from the repository root.

    ``env`` is laid over the test's environment with every inherited ``GENQ_*`` variable
    removed, so only what the test passes configures the process.
    """

    name = "genq"

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        super().__init__(
            [sys.executable, "-m", "genq", *argv],
            log_path=log_path,
            env=process_env({"PYTHONUNBUFFERED": "1", **env}),
            cwd=REPO_ROOT,
        )
        self.name = f"genq {' '.join(argv)}"


class RedisServer(ManagedProcess):
    """A private ``redis-server`` on 127.0.0.1; ``aof=True`` fsyncs every write to ``tmpdir``."""

    name = "redis-server"

    def __init__(self, tmpdir: Path, aof: bool = False, *, ready_timeout: float = 15.0) -> None:
        self.port = free_port()
        self.tmpdir = tmpdir
        self.ready_timeout = ready_timeout
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "save": "",
            "appendonly": "yes" if aof else "no",
            "appendfsync": "always",
            "dir": str(tmpdir),
            "daemonize": "no",
        }
        command = ["redis-server"]
        for name, value in options.items():
            command += [f"--{name}", value]
        super().__init__(command, log_path=tmpdir / "redis.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A new client for database 0; the caller closes it."""
        return redis.Redis.from_url(self.url, socket_timeout=5.0)

    def _wait_ready(self) -> None:
        self._poll_until(self._answers_ping, self.ready_timeout)

    def _answers_ping(self) -> bool:
        with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0) as client:
            try:
                return bool(client.ping())
            except redis.ConnectionError:  # includes BusyLoadingError while the AOF loads
                return False


class EmbeddedRuntime(ManagedProcess):
    """The real embedded llama.cpp server (``workers.embedded``) on a free loopback port.

    ``settings`` supplies the data dir (where the model is assembled), the model alias and
    context size; the port is always a fresh free one.
    """

    name = "embedded runtime"

    def __init__(self, settings: Settings, log_path: Path, *, ready_timeout: float = 180.0) -> None:
        self.port = free_port()
        self.settings = settings.model_copy(update={"embedded_port": self.port})
        self.ready_timeout = ready_timeout
        super().__init__([], log_path=log_path)

    @property
    def url(self) -> str:
        return self.settings.effective_runtime_url

    @property
    def model(self) -> str:
        return self.settings.default_model

    def start(self) -> Self:
        self.command = runtime_command(self.settings, model_file(self.settings))
        return super().start()

    def _wait_ready(self) -> None:
        def answers() -> bool:
            try:
                wait_until_ready(self.url, timeout_seconds=0.5)
            except TransientError:
                return False
            return True

        self._poll_until(answers, self.ready_timeout)


def _kill_group(process: subprocess.Popen[bytes], timeout: float = GROUP_EXIT_SECONDS) -> int:
    """SIGKILL the process's whole group, reap it, and wait (bounded) until no other member
    of the group is alive."""
    pgid = process.pid  # start_new_session made it the group leader
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    returncode = process.wait()
    deadline = time.monotonic() + timeout
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS / 5)
    return returncode


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs. A zombie does not count: it has exited
    (its files and sockets are closed) and only waits for init to reap it, which here can
    take over a second after its parent (a Celery worker's pool processes) was killed."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue  # gone meanwhile
        if int(group) == pgid and state not in ("Z", "X"):
            return True
    return False
