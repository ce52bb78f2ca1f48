"""The runtime fleet (issue 13): does dispatch through genq's backlog keep every slot busy?

Side by side in one run on this machine, with fake runtimes as separate processes (one slot
each, paced at 50 tokens/s):
  * scaling: aggregate tokens/s through genq with 1, 2 and 4 endpoints serving the jobs' model
    (64-token jobs, a backlog of ``JOBS_PER_ENDPOINT`` per endpoint), against the sum of the
    same endpoints' solo rates, each measured straight at the runtime (a client streaming the
    same requests one after the other). Target: ratio >= 0.9.
  * utilization: 1-second jobs (50 tokens) with a backlog on 4 one-slot endpoints: the share
    of slot-time the runtimes were busy while the backlog lasted (from the first job's start
    to the last one's), from the runtimes' own request log. Target: >= 95 %.
Medians over ``ROUNDS`` rounds. One worker process (its default concurrency: the fleet's 4
slots and one more), no beat.
Run: ``python -m benchmarks fleet`` (``make bench`` runs it with the others).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.core import fake_runtime
from benchmarks.stats import median
from genq.settings import Settings
from producers import GenqClient
from tests.support import GenqProcess, RedisServer

ROUNDS = 3
TOKEN_DELAY = 0.02  # 50 tokens/s
SCALING_TOKENS = 64
JOBS_PER_ENDPOINT = 8
SOLO_REQUESTS = 3
UTILIZATION_TOKENS = 50  # one second a job
UTILIZATION_JOBS = 24  # six per slot
ENDPOINTS = ("e1", "e2", "e3", "e4")
# The model a round's jobs ask for picks how many endpoints serve it.
MODEL_FOR = {1: "m1", 2: "m2", 4: "m4"}
SERVES = {"e1": ["m1", "m2", "m4"], "e2": ["m2", "m4"], "e3": ["m4"], "e4": ["m4"]}


def _configure(url: str, tokens: int, models: list[str]) -> None:
    config = {
        "tokens": ["tok "] * tokens,
        "token_delay_seconds": TOKEN_DELAY,
        "slots": 1,
        "record_requests": True,
        "known_models": models,
    }
    httpx.post(f"{url}/_fake/reset", timeout=5).raise_for_status()
    httpx.post(f"{url}/_fake/config", json=config, timeout=5).raise_for_status()


def _log(url: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{url}/_fake/stats", timeout=10).json()["request_log"])


def _solo_tokens_per_s(url: str, model: str, tokens: int) -> float:
    """The runtime alone: the worker's streaming request, one after another."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "solo"}],
        "max_tokens": tokens,
        "stream": True,
    }
    t0 = time.perf_counter()
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(SOLO_REQUESTS):
            with client.stream("POST", "/v1/chat/completions", json=body) as response:
                for _line in response.iter_lines():
                    pass
    return SOLO_REQUESTS * tokens / (time.perf_counter() - t0)


def _run_jobs(client: GenqClient, model: str, count: int, tokens: int) -> float:
    """Submit ``count`` jobs at once, wait for all; seconds from submit to the last done."""
    chat = {
        "model": model,
        "messages": [{"role": "user", "content": "bench"}],
        "max_tokens": tokens,
    }
    t0 = time.perf_counter()
    ids = [r.id for r in client.submit_many([chat] * count)]
    deadline = time.monotonic() + 600
    while client.store.count_finished(ids) < len(ids):
        if time.monotonic() > deadline:
            raise TimeoutError("fleet benchmark jobs unfinished")
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    failed = [r for r in (client.get(i) for i in ids) if r.status.value != "succeeded"]
    if failed:
        raise RuntimeError(f"{len(failed)} benchmark jobs did not succeed: {failed[0]}")
    return elapsed


def _busy_share(logs: list[list[dict[str, Any]]]) -> float:
    """Slot-time busy while the backlog lasted: from the first start to the last start."""
    entries = [e for log in logs for e in log]
    begin = min(e["t"] for e in entries)
    end = max(e["t"] for e in entries)
    if end <= begin:
        return 1.0
    busy = sum(max(0.0, min(e["end"], end) - max(e["t"], begin)) for e in entries)
    return busy / (len(logs) * (end - begin))


def run(tmp: Path) -> dict[str, Any]:
    fakes = {name: fake_runtime(tmp, f"fake-{name}") for name in ENDPOINTS}
    urls = {name: url for name, (_, url) in fakes.items()}
    fleet = tmp / "runtimes.toml"
    fleet.write_text(
        "".join(
            f'[[endpoints]]\nname = "{n}"\nurl = "{urls[n]}"\nmodels = {json.dumps(SERVES[n])}\n'
            "slots = 1\n\n"
            for n in ENDPOINTS
        )
    )
    results: dict[str, Any] = {"scaling": {}, "utilization": {}}
    try:
        with RedisServer(tmp / "redis") as redis_server:
            env = {
                "GENQ_REDIS_URL": redis_server.url,
                "GENQ_DATA_DIR": str(tmp / "data"),
                "GENQ_RUNTIMES_FILE": str(fleet),
                "GENQ_DEFAULT_MODEL": "m1",
                "GENQ_LOG_LEVEL": "WARNING",
                "GENQ_STREAM_COALESCE_MS": "15",
                "GENQ_MAX_QUEUED_PER_TENANT": "1000000",
            }
            # Concurrency: the fleet's default (its 4 slots and one more process).
            worker = GenqProcess(["worker"], env, tmp / "worker.log")
            worker.start()
            settings = Settings(**{k[5:].lower(): v for k, v in env.items()})
            with GenqClient(settings) as client:
                for name in ENDPOINTS:  # warm up every endpoint's connection
                    _configure(urls[name], 4, SERVES[name])
                _run_jobs(client, "m4", 8, 4)
                scaling: dict[int, list[float]] = {n: [] for n in MODEL_FOR}
                utilization: list[float] = []
                for _ in range(ROUNDS):
                    for n, model in MODEL_FOR.items():
                        serving = [e for e in ENDPOINTS if model in SERVES[e]]
                        for name in ENDPOINTS:
                            _configure(urls[name], SCALING_TOKENS, SERVES[name])
                        solo = sum(
                            _solo_tokens_per_s(urls[e], model, SCALING_TOKENS) for e in serving
                        )
                        jobs = JOBS_PER_ENDPOINT * n
                        elapsed = _run_jobs(client, model, jobs, SCALING_TOKENS)
                        scaling[n].append(jobs * SCALING_TOKENS / elapsed / solo)
                    for name in ENDPOINTS:
                        _configure(urls[name], UTILIZATION_TOKENS, SERVES[name])
                    _run_jobs(client, "m4", UTILIZATION_JOBS, UTILIZATION_TOKENS)
                    utilization.append(_busy_share([_log(urls[e]) for e in ENDPOINTS]))
            worker.stop()
    finally:
        for process, _ in fakes.values():
            process.stop()
    for n, ratios in scaling.items():
        results["scaling"][f"{n} endpoint(s)"] = {
            "aggregate / sum of solo rates (median)": round(median(ratios), 3),
            "rounds": [round(r, 3) for r in ratios],
        }
    results["load_average"] = round(os.getloadavg()[0], 1)  # the machine is shared: say how busy
    results["utilization"] = {
        "slot-time busy while backlogged (median)": round(median(utilization), 4),
        "rounds": [round(u, 4) for u in utilization],
    }
    return results


def report(results: dict[str, Any]) -> None:
    print("\nRuntime fleet: scaling (1-slot endpoints at 50 tokens/s, 64-token jobs)")
    for label, row in results["scaling"].items():
        ratio = row["aggregate / sum of solo rates (median)"]
        print(f"  {label:14s} aggregate / sum of solo = {ratio:.3f}")
    share = results["utilization"]["slot-time busy while backlogged (median)"]
    print(f"Runtime fleet: utilization with 1 s jobs and a backlog = {share:.1%}")
    print(f"(load average at the end: {results['load_average']})")


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="genq-bench-fleet-") as tmp:
        results = run(Path(tmp))
    report(results)
    return results


if __name__ == "__main__":
    main()
