"""A/B of two genq checkouts under the end-to-end load, side by side in one run.

``python -m benchmarks.e2e_ab NAME=DIR NAME=DIR [ROUNDS [SECONDS]]``: one stack per checkout
(its own Redis, fake runtime, gateway, worker with ``e2e.SLOTS`` slots, beat, each ``python -m
genq`` started in that checkout), then ``ROUNDS`` rounds (default 6) of ``SECONDS`` (default 8)
of ``e2e``'s load (``CLIENTS`` clients, submit then ``/wait``) on each stack in turn, the order
alternating; jobs/s per round and CPU ms per job per process. Make the checkouts with ``git
worktree add`` (one with the change, one without) so both run the same commit but the change.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import e2e
from benchmarks.core import fake_runtime
from benchmarks.stats import CpuMeter, median, process_tree
from tests.support import RedisServer, free_port
from tests.support.environment import process_env
from tests.support.processes import ManagedProcess


def _genq(root: Path, argv: list[str], env: dict[str, str], log: Path) -> ManagedProcess:
    command = [sys.executable, "-m", "genq", *argv]
    full_env = process_env({"PYTHONUNBUFFERED": "1", **env})
    return ManagedProcess(command, log_path=log, env=full_env, cwd=root)


def _stack(tmp: Path, root: Path) -> dict[str, Any]:
    redis_server = RedisServer(tmp / "redis").start()
    fake, fake_url = fake_runtime(tmp)
    port = free_port()
    env = e2e.stack_env(
        redis_server.url,
        tmp / "data",
        fake_url,
        e2e.MODEL,
        port,
        runtime_slots=str(e2e.SLOTS),
        max_queued_per_tenant=e2e.UNLIMITED,
    )
    key = e2e._api_key(env)
    gateway = _genq(root, ["gateway"], env, tmp / "gateway.log")
    worker = _genq(root, ["worker", "--concurrency", str(e2e.SLOTS)], env, tmp / "worker.log")
    beat = _genq(root, ["beat"], env, tmp / "beat.log")
    stack: dict[str, Any] = {"parts": [gateway, worker, beat, fake, redis_server], "port": port}
    for process in (gateway, worker, beat):
        process.start()
    e2e._wait_http(f"http://127.0.0.1:{port}/healthz", gateway)
    stack["headers"] = b"Authorization: Bearer %s\r\nContent-Type: application/json\r\n" % (
        key.encode()
    )
    stack["meter"] = CpuMeter(
        {
            "gateway": lambda: process_tree(gateway.pid),
            "worker main": lambda: [worker.pid],
            "worker children": lambda: process_tree(worker.pid)[1:],
            "redis": lambda: [redis_server.pid],
            "fake runtime": lambda: [fake.pid],
        }
    )
    return stack


def main(argv: list[str]) -> None:
    sides = dict(arg.split("=", 1) for arg in argv if "=" in arg)
    numbers = [arg for arg in argv if "=" not in arg]
    rounds = int(numbers[0]) if numbers else 6
    seconds = float(numbers[1]) if len(numbers) > 1 else 8.0
    stacks: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="genq-bench-e2e-ab-") as tmp_name:
        try:
            for name, root in sides.items():
                (Path(tmp_name) / name).mkdir()
                stacks[name] = _stack(Path(tmp_name) / name, Path(root).resolve())
                stack = stacks[name]
                asyncio.run(e2e._load(stack["port"], stack["headers"], 3, e2e._genq_job))  # warm
                stack["rates"], stack["jobs"] = [], 0.0
            print(f"load average at the start: {os.getloadavg()}")
            for n in range(rounds):
                for name in list(stacks) if n % 2 == 0 else list(reversed(stacks)):
                    stack = stacks[name]
                    stack["meter"].start()
                    started = time.perf_counter()
                    rate = asyncio.run(
                        e2e._load(stack["port"], stack["headers"], seconds, e2e._genq_job)
                    )
                    stack["meter"].stop()
                    stack["jobs"] += rate * (time.perf_counter() - started)
                    stack["rates"].append(rate)
            print(f"load average at the end: {os.getloadavg()}")
            for name, stack in stacks.items():
                cpu = {k: v * 1000 / stack["jobs"] for k, v in stack["meter"].spent.items()}
                genq = cpu["gateway"] + cpu["worker main"] + cpu["worker children"]
                print(
                    f"{name}: median {median(stack['rates']):.1f} jobs/s, rounds "
                    f"{[round(r, 1) for r in stack['rates']]}\n  CPU ms per job: "
                    + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
                    + f"; gateway + worker {genq:.2f}"
                )
        finally:
            for stack in stacks.values():
                for part in stack["parts"]:
                    part.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
