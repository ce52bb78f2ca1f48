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
    to its first token, ``TRIES`` times (target: p95 at most one line plus 50 ms).
Run: ``python -m benchmarks batches`` (``make bench`` runs it with the rest).
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from openai import OpenAI

from benchmarks.core import fake_runtime
from benchmarks.e2e import UNLIMITED, _api_key, _wait_http, stack_env
from benchmarks.openai_door import first_token_ms
from benchmarks.stats import peak_rss_mb, percentile
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


def interactive_wait(tmp: Path) -> dict[str, Any]:
    """Time to first token of interactive requests while a batch runs on one slot."""
    with RedisServer(tmp / "redis-1slot") as redis_server:
        fake, fake_url = fake_runtime(tmp)
        tokens = {"tokens": ["x "] * LINE_TOKENS, "token_delay_seconds": LINE_SECONDS / LINE_TOKENS}
        httpx.post(f"{fake_url}/_fake/config", json=tokens).raise_for_status()
        gateway_port = free_port()
        env = stack_env(
            redis_server.url, tmp / "data-1slot", fake_url, MODEL, gateway_port, runtime_slots="1"
        )
        key = _api_key(env)
        processes = [
            GenqProcess(["gateway"], env, tmp / "gateway-1slot.log"),
            GenqProcess(["worker", "--concurrency", "1"], env, tmp / "worker-1slot.log"),
            GenqProcess(["beat"], env, tmp / "beat-1slot.log"),
        ]
        try:
            for process in processes:
                process.start()
            url = f"http://127.0.0.1:{gateway_port}"
            _wait_http(f"{url}/healthz", processes[0])
            client = OpenAI(base_url=f"{url}/v1", api_key=key, timeout=600, max_retries=0)
            upload = client.files.create(
                file=("busy.jsonl", batch_file(LINES, "w", max_tokens=64)), purpose="batch"
            )
            batch = client.batches.create(
                input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
            time.sleep(2 * LINE_SECONDS)  # lines are running
            waits = []
            for _ in range(TRIES):
                time.sleep(random.uniform(0, LINE_SECONDS))  # land anywhere in a line
                waits.append(first_token_ms(client))
            running = client.batches.retrieve(batch.id)
            client.batches.cancel(batch.id)
        finally:
            for process in processes:
                process.stop()
            fake.stop()
    counts = running.request_counts
    return {
        "line_ms": LINE_SECONDS * 1000,
        "lines_done_meanwhile": counts.completed if counts else 0,
        "p50_ms": percentile(waits, 50),
        "p95_ms": percentile(waits, 95),
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
    print(
        f"interactive time to first token while a batch runs on one slot ({wait['line_ms']:.0f} "
        f"ms a line, {TRIES} tries): p50 {wait['p50_ms']:.0f} ms, p95 {wait['p95_ms']:.0f} ms "
        f"(target <= {wait['line_ms'] + TARGET_ADDED_MS:.0f} ms); batch lines done meanwhile "
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
