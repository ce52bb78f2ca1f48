"""End-to-end over HTTP: jobs through the gateway and a worker vs the runtime served directly.

Side by side in one run on this machine, with the instant fake runtime (a separate process that
serves many requests at once):
  * genq: ``CLIENTS`` clients, each submitting a job over ``POST /v1/jobs`` and long-polling
    ``GET /v1/jobs/{id}/wait`` until it is done, then the next; one gateway process, one worker
    with ``SLOTS`` slots (concurrency), beat running. Jobs completed per second.
  * runtime alone: the same ``CLIENTS`` clients sending the worker's streaming chat request
    straight to the runtime. Requests answered per second.
  * the ratio (target >= 0.2), the median over ``ROUNDS`` rounds alternating which side goes
    first; and the CPU each process spent per job (``/proc/<pid>/stat``) during genq's rounds.
Run: ``python -m benchmarks e2e`` (``--store postgres`` for PostgreSQL; ``make bench``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks.core import fake_runtime
from benchmarks.rawhttp import RawConnection
from benchmarks.stats import CpuMeter, median, process_tree
from benchmarks.stores import BenchStore
from genq.settings import Settings
from genq.store import build_engine
from genq.store.migrate import upgrade_database
from producers.api_keys import ApiKeyStore
from tests.support import GenqProcess, RedisServer, free_port

CLIENTS = 20
SLOTS = 4
ROUNDS = 3
PHASE_SECONDS = 8.0
WARMUP_SECONDS = 2.0
MODEL = "fake-model"
MESSAGES = [{"role": "user", "content": "ping"}]
# What genq's OpenAI adapter sends the runtime for this job.
RUNTIME_BODY = json.dumps(
    {
        "messages": MESSAGES,
        "model": MODEL,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
).encode()
RUNTIME_HEADERS = b"Content-Type: application/json\r\n"
JOB_BODY = json.dumps({"messages": MESSAGES}).encode()
UNLIMITED = "1000000"


async def _load(
    port: int, headers: bytes, seconds: float, one: Callable[[RawConnection], Awaitable[None]]
) -> float:
    """``CLIENTS`` keep-alive connections each calling ``one`` in a loop for ``seconds``;
    calls completed per second."""
    done = 0
    started = time.perf_counter()
    deadline = started + seconds

    async def client() -> None:
        nonlocal done
        connection = await RawConnection(port, headers).open()
        try:
            while time.perf_counter() < deadline:
                await one(connection)
                done += 1
        finally:
            connection.close()

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return done / (time.perf_counter() - started)


async def _httpx_load(url: str, seconds: float) -> float:
    """The runtime alone as a typical Python service calls it: ``CLIENTS`` tasks sharing one
    ``httpx.AsyncClient``, each streaming the chat request in a loop for ``seconds``."""
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    limits = httpx.Limits(max_connections=CLIENTS)
    headers = {"Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:

        async def client() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                request = http.build_request(
                    "POST", "/v1/chat/completions", content=RUNTIME_BODY, headers=headers
                )
                response = await http.send(request, stream=True)
                await response.aread()
                await response.aclose()
                done += 1

        await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return done / (time.perf_counter() - started)


async def _runtime_call(connection: RawConnection) -> None:
    status, body = await connection.request(b"POST", b"/v1/chat/completions", RUNTIME_BODY)
    if status != 200 or not body.rstrip().endswith(b"[DONE]"):
        raise RuntimeError(f"runtime answered {status}: {body[-200:]!r}")


async def _genq_job(connection: RawConnection) -> None:
    status, body = await connection.request(b"POST", b"/v1/jobs", JOB_BODY)
    if status != 201:
        raise RuntimeError(f"submit answered {status}: {body[:300]!r}")
    job_id = json.loads(body)["id"].encode()
    status, body = await connection.request(b"GET", b"/v1/jobs/%s/wait?timeout=60" % job_id)
    if status != 200 or b'"succeeded"' not in body:
        raise RuntimeError(f"wait answered {status}: {body[:300]!r}")


def stack_env(
    redis_url: str, data_dir: Path, runtime_url: str, model: str, gateway_port: int, **more: str
) -> dict[str, str]:
    """A benchmark stack's ``GENQ_*`` environment: quiet logs, no rate limit; ``more`` adds
    or overrides settings (``runtime_slots="4"`` is ``GENQ_RUNTIME_SLOTS=4``)."""
    return {
        "GENQ_REDIS_URL": redis_url,
        "GENQ_DATA_DIR": str(data_dir),
        "GENQ_RUNTIME_URL": runtime_url,
        "GENQ_DEFAULT_MODEL": model,
        "GENQ_LOG_LEVEL": "WARNING",
        "GENQ_GATEWAY_PORT": str(gateway_port),
        "GENQ_RATE_LIMIT_PER_SECOND": UNLIMITED,
        "GENQ_RATE_LIMIT_BURST": UNLIMITED,
        **{f"GENQ_{name.upper()}": value for name, value in more.items()},
    }


def _api_key(env: dict[str, str]) -> str:
    settings = Settings(**{k[5:].lower(): v for k, v in env.items() if k.startswith("GENQ_")})
    upgrade_database(settings.store_url)  # as the gateway does at its start
    engine = build_engine(settings.store_url)
    _row, key = ApiKeyStore(engine).create("bench-e2e")
    engine.dispose()
    return key


def _wait_http(url: str, process: GenqProcess) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer:\n{process.log_tail()}")
        time.sleep(0.05)


def run(tmp: Path, store: BenchStore) -> dict[str, Any]:
    with RedisServer(tmp / "redis") as redis_server:
        fake, fake_url = fake_runtime(tmp)
        gateway_port = free_port()
        env = {
            **stack_env(
                redis_server.url,
                tmp / "data",
                fake_url,
                MODEL,
                gateway_port,
                runtime_slots=str(SLOTS),
                max_queued_per_tenant=UNLIMITED,
            ),
            **store.env("e2e"),
        }
        key = _api_key(env)
        gateway = GenqProcess(["gateway"], env, tmp / "gateway.log")
        worker = GenqProcess(["worker", "--concurrency", str(SLOTS)], env, tmp / "worker.log")
        beat = GenqProcess(["beat"], env, tmp / "beat.log")
        try:
            for process in (gateway, worker, beat):
                process.start()
            _wait_http(f"http://127.0.0.1:{gateway_port}/healthz", gateway)
            meter = CpuMeter(
                {
                    "gateway": lambda: process_tree(gateway.pid),
                    "worker main": lambda: [worker.pid],
                    "worker children": lambda: process_tree(worker.pid)[1:],
                    "beat": lambda: process_tree(beat.pid),
                    "fake runtime": lambda: [fake.pid],
                    "redis": lambda: [redis_server.pid],
                    **({"postgres": store.server_pids} if store.kind == "postgres" else {}),
                    "benchmark client": lambda: [os.getpid()],
                }
            )
            return _measure(gateway_port, fake_url, key, meter)
        finally:
            for process in (gateway, worker, beat):
                process.stop()
            fake.stop()


def _measure(gateway_port: int, runtime_url: str, key: str, meter: CpuMeter) -> dict[str, Any]:
    runtime_port = int(runtime_url.rsplit(":", 1)[1])
    genq_headers = b"Authorization: Bearer %s\r\nContent-Type: application/json\r\n" % (
        key.encode()
    )
    sides: dict[str, Callable[[], float]] = {
        "genq": lambda: asyncio.run(_load(gateway_port, genq_headers, PHASE_SECONDS, _genq_job)),
        "runtime": lambda: asyncio.run(
            _load(runtime_port, RUNTIME_HEADERS, PHASE_SECONDS, _runtime_call)
        ),
        "runtime_httpx": lambda: asyncio.run(_httpx_load(runtime_url, PHASE_SECONDS)),
    }
    asyncio.run(_load(gateway_port, genq_headers, WARMUP_SECONDS, _genq_job))  # all paths warm
    asyncio.run(_load(runtime_port, RUNTIME_HEADERS, WARMUP_SECONDS, _runtime_call))
    rates: dict[str, list[float]] = {side: [] for side in sides}
    jobs = 0.0
    for n in range(ROUNDS):
        order = list(sides) if n % 2 == 0 else list(reversed(sides))  # no order bias
        for side in order:
            if side == "genq":
                meter.start()
            started = time.perf_counter()
            rates[side].append(sides[side]())
            if side == "genq":
                meter.stop()
                jobs += rates[side][-1] * (time.perf_counter() - started)
    return {
        "clients": CLIENTS,
        "slots": SLOTS,
        "rounds": ROUNDS,
        "phase_seconds": PHASE_SECONDS,
        "genq_jobs_per_s": median(rates["genq"]),
        "runtime_requests_per_s": median(rates["runtime"]),
        "ratio": median([g / r for g, r in zip(rates["genq"], rates["runtime"], strict=True)]),
        "runtime_httpx_requests_per_s": median(rates["runtime_httpx"]),
        "per_round": rates,
        "cpu_ms_per_job": {name: spent * 1000 / jobs for name, spent in meter.spent.items()},
    }


def report(results: dict[str, Any]) -> None:
    print(f"== end to end over HTTP ({results['store']} store) ==")
    print(
        f"{results['clients']} clients, {results['slots']} slots, instant fake runtime, median of "
        f"{results['rounds']} alternating rounds: genq {results['genq_jobs_per_s']:.0f} jobs/s "
        f"(submit + long-poll wait), runtime alone {results['runtime_requests_per_s']:.0f} "
        f"req/s, ratio {results['ratio']:.3f} (target >= 0.2); the runtime alone through "
        f"httpx.AsyncClient (a typical Python client): "
        f"{results['runtime_httpx_requests_per_s']:.0f} req/s"
    )
    cpu = results["cpu_ms_per_job"]
    print("CPU ms per job: " + ", ".join(f"{name} {ms:.2f}" for name, ms in cpu.items()))
    print(f"  total {sum(cpu.values()):.2f} ms per job")


def main(store: str = "sqlite") -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="genq-bench-e2e-") as tmp_name:
        tmp = Path(tmp_name)
        with BenchStore(store, tmp) as bench_store:
            results = {"store": store, **run(tmp, bench_store)}
    report(results)
    return results


if __name__ == "__main__":
    main(*sys.argv[1:])
