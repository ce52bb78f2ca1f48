"""A batch through ``/v1/files`` + ``/v1/batches`` vs the same requests through ``/v1/jobs``.

Side by side in one run, with the instant fake runtime (its own process), one gateway, one
worker with ``SLOTS`` slots, beat; both sides through the gateway with the official SDK or
httpx:
  * batch: upload a ``LINES``-line JSONL file (``files.create``), ``batches.create`` (answered
    ``validating``; the gateway's batch driver checks, stores and queues every line), then
    poll ``batches.retrieve`` to ``completed`` and read the output file. Upload time, create
    time, time to ``in_progress`` (validation + queueing), lines/s from create to completed.
  * jobs: the same ``LINES`` requests, ``CLIENTS`` clients each ``POST /v1/jobs`` one at a time
    in the batch lane at the same priority, until all have succeeded. Jobs/s.
  * the ratio (target >= 0.8), and the gateway's peak RSS (VmHWM) after a
    ``BIG_LINES``-line upload and batch queued (target <= 200 MB).
  * then, on a one-slot stack whose runtime takes ``LINE_SECONDS`` a line, while a
    ``LINES``-line batch runs: an interactive ``chat.completions.create(stream=True)``'s time
    to its first token, ``TRIES`` times (target: p95 at most one line plus 50 ms), side by
    side with the same request on an idle one-slot stack (tries alternate), and where the
    busy stack's time went (the rest of the running line, the worker's gap, the path).
Run: ``python -m benchmarks batches`` (``make bench`` runs it with the rest).
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from openai import OpenAI

from benchmarks.core import fake_runtime
from benchmarks.e2e import UNLIMITED, _api_key, _wait_http, stack_env
from benchmarks.stats import median, peak_rss_mb, percentile
from genq.settings import Settings
from genq.store import JobStore, build_engine
from genq.store.batches import BatchStore
from tests.support import GenqProcess, RedisServer, free_port

LINES = 10_000
BIG_LINES = 50_000
CLIENTS = 16
SLOTS = 4
MODEL = "fake-model"
TARGET_RATIO = 0.8
TARGET_RSS_MB = 200.0
TRIES = 20
LINE_TOKENS = 10
LINE_SECONDS = 0.1  # LINE_TOKENS tokens, one every LINE_SECONDS / LINE_TOKENS
TARGET_ADDED_MS = 50.0


def batch_file(lines: int, prefix: str = "q", max_tokens: int = 8) -> bytes:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "ping"}],
        "max_tokens": max_tokens,
    }
    return b"".join(
        json.dumps(
            {"custom_id": f"{prefix}{n}", "method": "POST", "url": "/v1/chat/completions",
             "body": body}
        ).encode() + b"\n"
        for n in range(lines)
    )  # fmt: skip


def batch_side(client: OpenAI, lines: int) -> dict[str, float]:
    content = batch_file(lines)
    started = time.perf_counter()
    upload = client.files.create(file=("bench.jsonl", content), purpose="batch")
    uploaded = time.perf_counter()
    batch = client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    created = queued = time.perf_counter()
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        time.sleep(0.2)
        batch = client.batches.retrieve(batch.id)
        if batch.status == "validating":
            queued = time.perf_counter()
    done = time.perf_counter()
    if batch.status != "completed" or batch.output_file_id is None:
        raise RuntimeError(f"the batch ended {batch.status}: {batch.errors}")
    answered = len(client.files.content(batch.output_file_id).text.splitlines())
    if answered != lines:
        raise RuntimeError(f"{answered} answers for {lines} lines")
    return {
        "upload_s": uploaded - started,
        "create_s": created - uploaded,
        "queue_s": queued - created,
        "run_s": done - created,
        "lines_per_s": lines / (done - uploaded),
    }


def jobs_side(http: httpx.Client, count: int) -> dict[str, float]:
    body = {
        "messages": [{"role": "user", "content": "ping"}],
        "max_tokens": 8,
        "lane": "batch",
        "priority": 2,
    }
    ids: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                if len(ids) >= count:
                    return
                ids.append("")  # a place taken; its id comes with the answer
                slot = len(ids) - 1
            job = http.post("/v1/jobs", json=body).raise_for_status().json()
            ids[slot] = job["id"]

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for job_id in ids:  # each answers once it is done
        record = http.get(f"/v1/jobs/{job_id}/wait", params={"timeout": 300}).json()
        if record["status"] != "succeeded":
            raise RuntimeError(f"job {job_id} ended {record['status']}")
    return {"jobs_per_s": count / (time.perf_counter() - started)}


def run(tmp: Path) -> dict[str, Any]:
    with RedisServer(tmp / "redis") as redis_server:
        fake, fake_url = fake_runtime(tmp)
        gateway_port = free_port()
        env = stack_env(
            redis_server.url,
            tmp / "data",
            fake_url,
            MODEL,
            gateway_port,
            runtime_slots=str(SLOTS),
            max_queued_per_tenant=UNLIMITED,
            batch_drive_seconds="0.5",
        )
        key = _api_key(env)
        gateway = GenqProcess(["gateway"], env, tmp / "gateway.log")
        worker = GenqProcess(["worker", "--concurrency", str(SLOTS)], env, tmp / "worker.log")
        beat = GenqProcess(["beat"], env, tmp / "beat.log")
        try:
            for process in (gateway, worker, beat):
                process.start()
            url = f"http://127.0.0.1:{gateway_port}"
            _wait_http(f"{url}/healthz", gateway)
            client = OpenAI(base_url=f"{url}/v1", api_key=key, timeout=600, max_retries=0)
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=url, headers=headers, timeout=330) as http:
                batch = batch_side(client, LINES)
                jobs = jobs_side(http, LINES)
            big = client.files.create(
                file=("big.jsonl", batch_file(BIG_LINES, "b")), purpose="batch"
            )
            started = time.perf_counter()
            created = client.batches.create(
                input_file_id=big.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
            while created.status == "validating":  # checked and queued by the driver
                time.sleep(0.5)
                created = client.batches.retrieve(created.id)
            big_create_s = time.perf_counter() - started
            client.batches.cancel(created.id)
            rss = peak_rss_mb(gateway.pid)
        finally:
            for process in (gateway, worker, beat):
                process.stop()
            fake.stop()
    return {
        "lines": LINES,
        "batch": batch,
        "jobs": jobs,
        "ratio": batch["lines_per_s"] / jobs["jobs_per_s"],
        "big_lines": BIG_LINES,
        "big_create_s": big_create_s,
        "gateway_peak_rss_mb": rss,
    }


@contextmanager
def one_slot_stack(tmp: Path) -> Iterator[tuple[OpenAI, str]]:
    """A gateway, a one-slot worker and beat over their own Redis, store and fake runtime
    (``LINE_TOKENS`` tokens, ``LINE_SECONDS`` a request); the SDK client and the store URL."""
    tmp.mkdir(parents=True, exist_ok=True)
    with RedisServer(tmp / "redis") as redis_server:
        fake, fake_url = fake_runtime(tmp)
        tokens = {"tokens": ["x "] * LINE_TOKENS, "token_delay_seconds": LINE_SECONDS / LINE_TOKENS}
        httpx.post(f"{fake_url}/_fake/config", json=tokens).raise_for_status()
        gateway_port = free_port()
        env = stack_env(
            redis_server.url, tmp / "data", fake_url, MODEL, gateway_port, runtime_slots="1"
        )
        key = _api_key(env)
        processes = [
            GenqProcess(["gateway"], env, tmp / "gateway.log"),
            GenqProcess(["worker", "--concurrency", "1"], env, tmp / "worker.log"),
            GenqProcess(["beat"], env, tmp / "beat.log"),
        ]
        try:
            for process in processes:
                process.start()
            url = f"http://127.0.0.1:{gateway_port}"
            _wait_http(f"{url}/healthz", processes[0])
            client = OpenAI(base_url=f"{url}/v1", api_key=key, timeout=600, max_retries=0)
            yield client, Settings(**{k[5:].lower(): v for k, v in env.items()}).store_url
        finally:
            for process in processes:
                process.stop()
            fake.stop()


def timed_request(client: OpenAI) -> tuple[str, float]:
    """One interactive streamed chat completion: its job id and ms to its first text."""
    started = time.perf_counter()
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "ping"}], stream=True
    )
    first: float | None = None
    for chunk in raw.parse():
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = (time.perf_counter() - started) * 1000
    if first is None:
        raise RuntimeError("the stream ended without text")
    return raw.headers["x-genq-job-id"], first


def where_the_time_went(
    store_url: str, batch_id: str, tries: list[tuple[str, float]]
) -> dict[str, float]:
    """Medians, from the store, of what each try waited for: the rest of the batch line
    running when it arrived, the worker's gap between that line's end and its start, the
    line's own length, and the request's path (its time to first token minus its time in
    genq between being stored and the runtime's first token)."""
    engine = build_engine(store_url)
    records, after = [], 0
    while page := BatchStore(engine).lines(batch_id, after_line=after, limit=500):
        records += [line.record for line in page if line.record and line.record.finished_at]
        after = page[-1].line
    ended = sorted(records, key=lambda record: record.finished_at or record.created_at)
    parts: dict[str, list[float]] = {"line_left": [], "gap": [], "line": [], "path": []}

    def ms(start: datetime | None, end: datetime | None) -> float:
        assert start is not None and end is not None
        return (end - start).total_seconds() * 1000

    for job_id, first_ms in tries:
        job = JobStore(engine).get(job_id)
        assert job is not None and job.started_at is not None
        parts["path"].append(first_ms - ms(job.created_at, job.first_token_at))
        before = [line for line in ended if line.finished_at <= job.started_at]  # type: ignore[operator]
        if before:
            line = before[-1]
            parts["line_left"].append(max(0.0, ms(job.created_at, line.finished_at)))
            parts["gap"].append(ms(line.finished_at, job.started_at))
            parts["line"].append(ms(line.started_at, line.finished_at))
    engine.dispose()
    return {name: median(values) for name, values in parts.items() if values}


def interactive_wait(tmp: Path) -> dict[str, Any]:
    """Time to first token of interactive requests on a one-slot stack while a batch runs,
    side by side with the same requests on an idle one-slot stack (tries alternate)."""
    with (
        one_slot_stack(tmp / "busy") as (busy, busy_store),
        one_slot_stack(tmp / "idle") as (
            idle,
            _idle_store,
        ),
    ):
        for _ in range(3):  # both paths warm
            timed_request(busy)
            timed_request(idle)
        upload = busy.files.create(
            file=("busy.jsonl", batch_file(LINES, "w", max_tokens=64)), purpose="batch"
        )
        batch = busy.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        while busy.batches.retrieve(batch.id).status == "validating":
            time.sleep(0.5)  # its lines are queued (and running)
        load = os.getloadavg()[0]
        busy_tries, idle_waits = [], []
        for _ in range(TRIES):
            time.sleep(random.uniform(0, LINE_SECONDS))  # land anywhere in a line
            busy_tries.append(timed_request(busy))
            time.sleep(random.uniform(0, LINE_SECONDS))
            idle_waits.append(timed_request(idle)[1])
        running = busy.batches.retrieve(batch.id)
        busy.batches.cancel(batch.id)
    counts = running.request_counts
    waits = [first for _job, first in busy_tries]
    return {
        "line_ms": LINE_SECONDS * 1000,
        "load": load,
        "lines_done_meanwhile": counts.completed if counts else 0,
        "p50_ms": percentile(waits, 50),
        "p95_ms": percentile(waits, 95),
        "idle_p50_ms": percentile(idle_waits, 50),
        "idle_p95_ms": percentile(idle_waits, 95),
        "medians_ms": where_the_time_went(busy_store, batch.id, busy_tries),
    }


def report(results: dict[str, Any]) -> None:
    batch, jobs = results["batch"], results["jobs"]
    print("== A batch (/v1/files + /v1/batches) vs the same requests through /v1/jobs ==")
    print(
        f"{results['lines']} lines, instant fake runtime, {SLOTS} slots: upload "
        f"{batch['upload_s']:.2f} s, create {batch['create_s']:.2f} s, checked and queued "
        f"{batch['queue_s']:.1f} s later, "
        f"to completed {batch['run_s']:.1f} s: {batch['lines_per_s']:.0f} lines/s; /v1/jobs "
        f"({CLIENTS} clients) {jobs['jobs_per_s']:.0f} jobs/s; ratio {results['ratio']:.2f} "
        f"(target >= {TARGET_RATIO})"
    )
    wait = results["interactive"]
    parts = ", ".join(f"{name} {value:.0f}" for name, value in wait["medians_ms"].items())
    # The bound: one batch line's duration (as the store saw the lines run, start to
    # end, median; the runtime's nominal line time when none was measured) plus 50 ms.
    line_ms = wait["medians_ms"].get("line", wait["line_ms"])
    print(
        f"interactive time to first token while a batch runs on one slot ({line_ms:.0f} ms a "
        f"line, nominal {wait['line_ms']:.0f}, {TRIES} tries, load {wait['load']:.1f}): p50 "
        f"{wait['p50_ms']:.0f} ms, p95 {wait['p95_ms']:.0f} ms (target <= "
        f"{line_ms + TARGET_ADDED_MS:.0f} ms); on an "
        f"idle one-slot stack side by side p50 {wait['idle_p50_ms']:.0f} ms, p95 "
        f"{wait['idle_p95_ms']:.0f} ms; medians (ms): {parts}; batch lines done meanwhile "
        f"{wait['lines_done_meanwhile']}"
    )
    print(
        f"a {results['big_lines']}-line batch: queued in {results['big_create_s']:.1f} s; "
        f"gateway peak RSS {results['gateway_peak_rss_mb']:.0f} MB (target <= "
        f"{TARGET_RSS_MB:.0f} MB)"
    )


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="genq-bench-batches-") as tmp_name:
        results = run(Path(tmp_name))
        results["interactive"] = interactive_wait(Path(tmp_name))
    report(results)
    return results


if __name__ == "__main__":
    main(*sys.argv[1:])
