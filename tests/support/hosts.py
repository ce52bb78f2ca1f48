"""Several "hosts" on this machine: each its own host name, data dir and process groups,
all sharing one Redis, one store (PostgreSQL) and one broker, as a fleet's machines would.

``host.kill()`` SIGKILLs every process group of the host at once: the machine is gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.ports import free_port
from tests.support.processes import GenqProcess
from tests.support.waiting import eventually

__all__ = ["Host", "host_env"]

GATEWAY_START_SECONDS = 30.0


def host_env(shared: dict[str, str], name: str, root: Path) -> dict[str, str]:
    """``shared`` (Redis, store, broker, timings) with this host's name and data dir."""
    data_dir = root / name
    data_dir.mkdir(parents=True, exist_ok=True)
    return {**shared, "GENQ_HOSTNAME": name, "GENQ_DATA_DIR": str(data_dir)}


@dataclass
class Host:
    """The genq processes of one simulated machine; each in its own process group."""

    name: str
    env: dict[str, str]
    log_dir: Path
    processes: list[GenqProcess] = field(default_factory=list)

    @classmethod
    def create(cls, name: str, shared: dict[str, str], root: Path) -> Host:
        return cls(name=name, env=host_env(shared, name, root), log_dir=root / "logs")

    def start(self, argv: list[str], name: str, **env: str) -> GenqProcess:
        log_path = self.log_dir / f"{self.name}-{name}-{len(self.processes)}.log"
        process = GenqProcess(argv, {**self.env, **env}, log_path)
        self.processes.append(process)
        return process.start()

    def worker(self, concurrency: int = 4, name: str = "llm") -> GenqProcess:
        process = self.start(
            ["worker", "--name", name, "--concurrency", str(concurrency)], name=name
        )
        process.wait_for_log("ready.", timeout=60)
        return process

    def ops_worker(self) -> GenqProcess:
        """Webhook deliveries (and the maintenance queue), never LLM lanes."""
        argv = ["worker", "--name", "ops", "--lanes", "", "--queues", "webhooks,maintenance"]
        process = self.start([*argv, "--pool", "threads", "--concurrency", "4"], name="ops")
        process.wait_for_log("ready.", timeout=60)
        return process

    def beat(self) -> GenqProcess:
        process = self.start(["beat"], name="beat")
        process.wait_for_log("beat: Starting", timeout=60)
        return process

    def gateway(self, **env: str) -> str:
        """Start a gateway on a free port; its base URL once ``/healthz`` answers."""
        port = free_port()
        process = self.start(["gateway"], name="gateway", GENQ_GATEWAY_PORT=str(port), **env)
        url = f"http://127.0.0.1:{port}"

        def serving() -> bool:
            try:
                return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
            except httpx.TransportError:
                return False

        if not eventually(lambda: serving() or not process.running, GATEWAY_START_SECONDS):
            raise AssertionError(f"gateway of {self.name} did not start:\n{process.log_tail()}")
        if not process.running:
            raise AssertionError(f"gateway of {self.name} exited:\n{process.log_tail()}")
        return url

    def kill(self) -> float:
        """SIGKILL every process group of this host at once (then reap them); when it was
        sent (``time.time()``)."""
        at = time.time()
        for process in self.processes:
            if process.running:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
        for process in self.processes:
            process.kill()
        return at

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.stop(timeout=3.0)
