"""The OpenAI front door's overhead: time to first token of ``chat.completions.create(stream=
True)`` through genq (gateway, queue, worker) vs the same SDK call straight to the runtime.

Side by side in one run: the instant fake runtime (its own process), one gateway, one worker
with one slot, beat; one client calling one request at a time (nothing waits in the queue:
this is the path's cost, not a queue's). ``ROUNDS`` rounds of ``REQUESTS`` requests, sides
alternating; p50 and p95 of each, and the p50 difference (target: at most 15 ms added). A
third side is genq's own API for the same job (``POST /v1/jobs``, then its SSE stream to the
first ``delta``), to tell the front door's cost from the submit path's.
Run: ``python -m benchmarks openai_door`` (``make bench`` runs it with the rest).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from openai import OpenAI

from benchmarks.core import fake_runtime
from benchmarks.e2e import _api_key, _wait_http, stack_env
from benchmarks.stats import median, percentile
from tests.support import GenqProcess, RedisServer, free_port

ROUNDS = 4
REQUESTS = 50
WARMUP_REQUESTS = 10
MODEL = "fake-model"
MESSAGES: Any = [{"role": "user", "content": "ping"}]
TARGET_ADDED_MS = 15.0


def first_token_ms(client: OpenAI) -> float:
    """Milliseconds from sending one streamed chat completion to its first text."""
    started = time.perf_counter()
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    first: float | None = None
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = (time.perf_counter() - started) * 1000
    if first is None:
        raise RuntimeError("the stream ended without text")
    return first


def jobs_api_first_token_ms(http: httpx.Client) -> float:
    """The same through genq's own API: submit, then read the job's stream to its first delta."""
    started = time.perf_counter()
    job_id = http.post("/v1/jobs", json={"messages": MESSAGES}).raise_for_status().json()["id"]
    with http.stream("GET", f"/v1/jobs/{job_id}/stream") as events:
        for line in events.iter_lines():
            if line == "event: delta":
                return (time.perf_counter() - started) * 1000
    raise RuntimeError("the job's stream ended without a delta")


def run(tmp: Path) -> dict[str, Any]:
    with RedisServer(tmp / "redis") as redis_server:
        fake, fake_url = fake_runtime(tmp)
        gateway_port = free_port()
        env = stack_env(redis_server.url, tmp / "data", fake_url, MODEL, gateway_port)
        key = _api_key(env)
        processes = [
            GenqProcess(["gateway"], env, tmp / "gateway.log"),
            GenqProcess(["worker", "--concurrency", "1"], env, tmp / "worker.log"),
            GenqProcess(["beat"], env, tmp / "beat.log"),
        ]
        try:
            for process in processes:
                process.start()
            _wait_http(f"http://127.0.0.1:{gateway_port}/healthz", processes[0])
            gateway_url = f"http://127.0.0.1:{gateway_port}"
            genq = OpenAI(base_url=f"{gateway_url}/v1", api_key=key)
            runtime = OpenAI(base_url=f"{fake_url}/v1", api_key="unused")
            with httpx.Client(
                base_url=gateway_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            ) as http:
                return measure(
                    {
                        "genq": lambda: first_token_ms(genq),
                        "runtime": lambda: first_token_ms(runtime),
                        "genq_jobs_api": lambda: jobs_api_first_token_ms(http),
                    }
                )
        finally:
            for process in processes:
                process.stop()
            fake.stop()


def measure(sides: dict[str, Callable[[], float]]) -> dict[str, Any]:
    for call in sides.values():  # connections, the worker's first job, imports: warm
        for _ in range(WARMUP_REQUESTS):
            call()
    times: dict[str, list[float]] = {side: [] for side in sides}
    for n in range(ROUNDS):
        order = list(sides) if n % 2 == 0 else list(reversed(sides))
        for side in order:
            times[side] += [sides[side]() for _ in range(REQUESTS)]
    summary = {
        side: {"p50_ms": median(values), "p95_ms": percentile(values, 95)}
        for side, values in times.items()
    }
    added = summary["genq"]["p50_ms"] - summary["runtime"]["p50_ms"]
    return {"requests_per_side": ROUNDS * REQUESTS, **summary, "added_p50_ms": added}


def report(results: dict[str, Any]) -> None:
    genq, runtime = results["genq"], results["runtime"]
    print("== OpenAI front door: time to first token, chat.completions.create(stream=True) ==")
    print(
        f"{results['requests_per_side']} requests a side, one at a time, instant fake runtime: "
        f"through genq p50 {genq['p50_ms']:.1f} ms / p95 {genq['p95_ms']:.1f} ms; straight "
        f"to the runtime p50 {runtime['p50_ms']:.1f} ms / p95 {runtime['p95_ms']:.1f} ms; "
        f"added at p50 {results['added_p50_ms']:.1f} ms (target <= {TARGET_ADDED_MS:.0f} ms)"
    )
    jobs_api = results["genq_jobs_api"]
    print(
        f"the same job through POST /v1/jobs + its stream: p50 {jobs_api['p50_ms']:.1f} ms / "
        f"p95 {jobs_api['p95_ms']:.1f} ms"
    )


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="genq-bench-openai-") as tmp_name:
        results = run(Path(tmp_name))
    report(results)
    return results


if __name__ == "__main__":
    main(*sys.argv[1:])
