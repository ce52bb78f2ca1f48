"""Core path benchmark: genq vs a raw Celery round trip, and genq vs a direct runtime client.

Side by side in one run on this machine:
  * overhead: idle end-to-end latency p50/p99 with an instant (fake) runtime, genq vs a raw
    Celery no-op round trip on the same Redis; throughput over 2000 jobs, genq vs raw Celery;
  * runtime efficiency: completion tokens/s through genq vs a direct streaming client on the
    same embedded runtime at the same concurrency (one slot);
  * peak RSS of the worker processes.
Run: ``python -m benchmarks core`` (``--store postgres`` for PostgreSQL; or ``make bench``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks.stats import CpuMeter, median, peak_rss_mb, percentile, process_tree
from benchmarks.stores import BenchStore
from genq.settings import Settings
from producers import GenqClient
from schemas import TERMINAL_STATES, JobStatus
from tests.support import EmbeddedRuntime, GenqProcess, ManagedProcess, RedisServer, free_port

ROUND_TRIPS = 200
THROUGHPUT_JOBS = 2000
THROUGHPUT_ROUNDS = 3
CONCURRENCY = 2
CHAT = {"messages": [{"role": "user", "content": "ping"}]}


def fake_runtime(tmp: Path, name: str = "fake") -> tuple[ManagedProcess, str]:
    """The instant fake runtime as a separate process (so it does not share our GIL); its
    output goes to ``<tmp>/<name>.log``."""
    port = free_port()
    fake = ManagedProcess(
        [
            sys.executable,
            "-m",
            "tests.fakes.runtime_server",
            "--port",
            str(port),
            "--mode",
            "instant",
        ],
        log_path=tmp / f"{name}.log",
    )
    fake.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(f"{url}/v1/models", timeout=0.5)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    return fake, url


def _env(redis_url: str, tmp: Path, runtime_url: str, model: str) -> dict[str, str]:
    return {
        "GENQ_REDIS_URL": redis_url,
        "GENQ_DATA_DIR": str(tmp / "data"),
        "GENQ_RUNTIME_URL": runtime_url,
        # The runtime's slots (shared by every worker process): as many as the worker runs.
        "GENQ_RUNTIME_SLOTS": str(CONCURRENCY),
        "GENQ_DEFAULT_MODEL": model,
        "GENQ_LOG_LEVEL": "WARNING",
        "GENQ_STREAM_COALESCE_MS": "15",
    }


def _settings(env: dict[str, str]) -> Settings:
    return Settings(**{k[5:].lower(): v for k, v in env.items() if k.startswith("GENQ_")})


def _wait_all_terminal(client: GenqClient, ids: list[str], timeout: float = 600) -> None:
    """Wait until every job is terminal: first the last submitted one (one row's state; jobs
    of one priority run in submission order, give or take the slots), then all of them, in a
    COUNT. Counting thousands of ids every 100 ms from the start cost the shared cores more
    than the jobs did on PostgreSQL (19 ms of client CPU a poll for 2000 ids)."""
    deadline = time.monotonic() + timeout

    def poll(done: Callable[[], bool]) -> None:
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError("jobs unfinished")
            time.sleep(0.02)

    poll(lambda: client.store.status(ids[-1]) in TERMINAL_STATES)
    poll(lambda: client.store.count_finished(ids) >= len(ids))


def _raw_worker(
    tmp: Path, url: str, name: str, *extra: str, backend: str | None = None
) -> ManagedProcess:
    """A raw Celery worker on broker ``url`` (results in ``backend``, default the broker)."""
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "benchmarks.raw_celery",
        "worker",
        "-c",
        str(CONCURRENCY),
        "-P",
        "prefork",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "WARNING",
        *extra,
    ]
    env = {
        **os.environ,
        "BENCH_REDIS_URL": url,
        **({"BENCH_BACKEND_URL": backend} if backend else {}),
    }
    return ManagedProcess(argv, log_path=tmp / f"{name}.log", env=env).start()


def _raw_rate(noop: Any, jobs: int = THROUGHPUT_JOBS) -> float:
    t0 = time.perf_counter()
    results = [noop.delay() for _ in range(jobs)]
    for result in results:
        result.get(timeout=300)
    return jobs / (time.perf_counter() - t0)


def _genq_rate(client: GenqClient, jobs: int = THROUGHPUT_JOBS) -> float:
    t0 = time.perf_counter()
    ids = [r.id for r in client.submit_many([CHAT] * jobs)]
    _wait_all_terminal(client, ids)
    return jobs / (time.perf_counter() - t0)


def overhead(tmp: Path, store: BenchStore, rounds: int = THROUGHPUT_ROUNDS) -> dict[str, Any]:
    """Latency, then ``rounds`` rounds of throughput: raw Celery, raw Celery with task events,
    genq, one after the other in each round (the machine's noise reaches all three alike);
    the figures are medians over the rounds."""
    from benchmarks import raw_celery

    with RedisServer(tmp / "redis") as redis_server:
        fake, fake_url = fake_runtime(tmp)
        env = {**_env(redis_server.url, tmp, fake_url, "fake-model"), **store.env("overhead")}
        worker = GenqProcess(
            ["worker", "--concurrency", str(CONCURRENCY)], env, tmp / "worker.log"
        ).start()
        base = redis_server.url.rsplit("/", 1)[0]
        raw_urls = {"plain": f"{base}/1", "events": f"{base}/2"}
        raws = [
            _raw_worker(tmp, raw_urls["plain"], "raw"),
            _raw_worker(tmp, raw_urls["events"], "raw-events", "-E"),
        ]
        noops = {}
        for name, url in raw_urls.items():
            os.environ["BENCH_REDIS_URL"] = url
            noops[name] = raw_celery.make_app().tasks["raw.noop"]
        client = GenqClient(_settings(env))
        try:
            for noop in noops.values():
                noop.delay().get(timeout=30)  # warm up every path (and: the workers are up)
            client.wait(client.submit(CHAT).id, timeout=60)
            genq_lat, raw_lat = [], []
            for _ in range(ROUND_TRIPS):
                t0 = time.perf_counter()
                client.wait(client.submit(CHAT).id, timeout=30)
                genq_lat.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                noops["plain"].delay().get(timeout=30)
                raw_lat.append((time.perf_counter() - t0) * 1000)

            meter = CpuMeter(
                {
                    "worker main": lambda: [worker.pid],
                    "worker children": lambda: process_tree(worker.pid)[1:],
                    "fake runtime": lambda: [fake.pid],
                    "redis": lambda: [redis_server.pid],
                    **({"postgres": store.server_pids} if store.kind == "postgres" else {}),
                    "benchmark client": lambda: [os.getpid()],
                }
            )
            raw_rates, raw_events_rates, genq_rates = [], [], []
            for _ in range(rounds):
                raw_rates.append(_raw_rate(noops["plain"]))
                raw_events_rates.append(_raw_rate(noops["events"]))
                meter.start()
                genq_rates.append(_genq_rate(client))
                meter.stop()
            rss = {pid: peak_rss_mb(pid) for pid in process_tree(worker.pid)}
        finally:
            client.close()
            for raw in raws:
                raw.stop()
            worker.stop()
            fake.stop()
    genq_rate, raw_rate, raw_events_rate = (
        median(genq_rates),
        median(raw_rates),
        median(raw_events_rates),
    )
    return {
        "latency_ms": {
            "genq_p50": median(genq_lat),
            "genq_p99": percentile(genq_lat, 99),
            "raw_celery_p50": median(raw_lat),
            "raw_celery_p99": percentile(raw_lat, 99),
            "overhead_p50": median(genq_lat) - median(raw_lat),
        },
        "throughput_jobs_per_s": {
            "genq": genq_rate,
            "raw_celery": raw_rate,
            "ratio": genq_rate / raw_rate,
            "raw_celery_task_events": raw_events_rate,
            "ratio_task_events": genq_rate / raw_events_rate,
            "rounds": rounds,
            "per_round": {
                "genq": genq_rates,
                "raw_celery": raw_rates,
                "raw_celery_task_events": raw_events_rates,
            },
        },
        "cpu_ms_per_job": {
            name: spent * 1000 / (rounds * THROUGHPUT_JOBS) for name, spent in meter.spent.items()
        },
        "worker_peak_rss_mb": {
            "max_process": max(rss.values()),
            "processes": len(rss),
            "total": sum(rss.values()),
        },
    }


PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how rain forms, step by step.",
    "List ten fruits and describe each one.",
    "Describe a walk through a busy market.",
]


def _direct_tokens_per_s(url: str, model: str, max_tokens: int) -> float:
    tokens = 0
    t0 = time.perf_counter()
    with httpx.Client(base_url=url, timeout=300) as http:
        for prompt in PROMPTS:
            body = {
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
                "temperature": 0,
                "seed": 1,
                "stream": True,
            }
            with http.stream("POST", "/v1/chat/completions", json=body) as response:
                for line in response.iter_lines():
                    if line.startswith("data:") and '"content"' in line:
                        tokens += 1
    return tokens / (time.perf_counter() - t0)


def _genq_tokens_per_s(client: GenqClient, max_tokens: int) -> float:
    t0 = time.perf_counter()
    ids = [
        client.submit(
            {
                "messages": [{"role": "user", "content": p}],
                "max_tokens": max_tokens,
                "temperature": 0,
                "seed": 1,
            }
        ).id
        for p in PROMPTS
    ]
    tokens = 0
    for job_id in ids:
        record = client.wait(job_id, timeout=600)
        assert record.status is JobStatus.SUCCEEDED, record.error
        tokens += record.usage.completion_tokens if record.usage else 0
    return tokens / (time.perf_counter() - t0)


def runtime_efficiency(
    tmp: Path, store: BenchStore, rounds: int = 5, max_tokens: int = 64
) -> dict[str, Any]:
    settings = Settings(data_dir=tmp / "embedded")
    with (
        RedisServer(tmp / "redis-rt") as redis_server,
        EmbeddedRuntime(settings, tmp / "runtime.log") as runtime,
    ):
        env = {**_env(redis_server.url, tmp / "rt", runtime.url, runtime.model), **store.env("rt")}
        worker = GenqProcess(["worker", "--concurrency", "1"], env, tmp / "worker-rt.log").start()
        client = GenqClient(_settings(env))
        try:
            _direct_tokens_per_s(runtime.url, runtime.model, 8)  # warm the model
            direct, through = [], []
            for n in range(rounds):  # which side goes first alternates (no order bias)
                if n % 2:
                    through.append(_genq_tokens_per_s(client, max_tokens))
                direct.append(_direct_tokens_per_s(runtime.url, runtime.model, max_tokens))
                if not n % 2:
                    through.append(_genq_tokens_per_s(client, max_tokens))
        finally:
            client.close()
            worker.stop()
    return {
        "direct_tokens_per_s": median(direct),
        "genq_tokens_per_s": median(through),
        "ratio": median([g / d for g, d in zip(through, direct, strict=True)]),
        "ratio_of_medians": median(through) / median(direct),
        "rounds": rounds,
    }


def main(store: str = "sqlite") -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="genq-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with BenchStore(store, tmp) as bench_store:
            results = {
                "store": store,
                "overhead": overhead(tmp, bench_store),
                "runtime": runtime_efficiency(tmp, bench_store),
            }
    o, r = results["overhead"], results["runtime"]
    lat, thr, rss = o["latency_ms"], o["throughput_jobs_per_s"], o["worker_peak_rss_mb"]
    print(f"== core path ({store} store) ==")
    print(
        f"idle latency p50/p99 ms: genq {lat['genq_p50']:.1f}/{lat['genq_p99']:.1f}  "
        f"raw celery {lat['raw_celery_p50']:.1f}/{lat['raw_celery_p99']:.1f}  "
        f"overhead p50 {lat['overhead_p50']:.1f} ms (target <= 10)"
    )
    print(
        f"throughput jobs/s ({THROUGHPUT_JOBS} jobs, concurrency {CONCURRENCY}, median of "
        f"{thr['rounds']} alternating rounds): "
        f"genq {thr['genq']:.0f}  raw celery {thr['raw_celery']:.0f}  "
        f"ratio {thr['ratio']:.2f} (target >= 0.5); raw celery with task events on (as genq "
        f"runs them, for Flower) {thr['raw_celery_task_events']:.0f}, ratio "
        f"{thr['ratio_task_events']:.2f}"
    )
    print(
        f"runtime tokens/s: direct {r['direct_tokens_per_s']:.1f}  genq "
        f"{r['genq_tokens_per_s']:.1f}  ratio {r['ratio']:.3f} (median of {r['rounds']} "
        "per-round ratios, alternating which goes first; "
        f"ratio of medians {r['ratio_of_medians']:.3f}; target >= 0.97)"
    )
    cpu = o["cpu_ms_per_job"]
    print(
        "CPU ms per job in the throughput rounds: "
        + ", ".join(f"{name} {ms:.2f}" for name, ms in cpu.items())
        + f"; total {sum(cpu.values()):.2f}"
    )
    print(
        f"worker peak RSS MB: max process {rss['max_process']:.0f} over {rss['processes']} "
        f"processes, total {rss['total']:.0f} (target <= 150 per process)"
    )
    return results


if __name__ == "__main__":
    main()
