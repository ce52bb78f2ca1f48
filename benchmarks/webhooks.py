"""Webhook benchmark: delivery throughput and the latency webhooks add to a finished job.

On this machine, against real processes (Redis, an LLM worker on the instant fake runtime, an
ops worker on ``genq.webhooks``, beat) and a local receiver that verifies every signature:
  * throughput: 1000 jobs complete while no ops worker runs, so 1000 deliveries wait in
    ``genq.webhooks``; then one ops worker starts and drains them (events/s, first to last
    arrival) — as shipped (8 threads) and as 4 prefork processes;
  * added latency: jobs one at a time, from the terminal transition (the job's ``finished_at``
    in the store) to the signed POST arriving at the receiver (p50/p99; targets 50/250 ms).
Run: ``python -m benchmarks webhooks`` (or ``make bench``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.core import fake_runtime as _fake_runtime
from benchmarks.stats import median, percentile
from genq.settings import Settings
from producers import GenqClient
from producers.webhook_admin import add_endpoint
from schemas import JobStatus
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.support import GenqProcess, RedisServer

THROUGHPUT_JOBS = 1000
LATENCY_JOBS = 200
OPS_CONCURRENCY = 8  # as compose.yaml runs it
PREFORK_CONCURRENCY = 4
LLM_CONCURRENCY = 4
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CHAT = {"messages": [{"role": "user", "content": "ping"}]}


def _env(redis_url: str, tmp: Path, runtime_url: str) -> dict[str, str]:
    return {
        "GENQ_REDIS_URL": redis_url,
        "GENQ_DATA_DIR": str(tmp / "data"),
        "GENQ_RUNTIME_URL": runtime_url,
        "GENQ_RUNTIME_SLOTS": str(LLM_CONCURRENCY),
        "GENQ_DEFAULT_MODEL": "fake-model",
        "GENQ_LOG_LEVEL": "WARNING",
        "GENQ_WEBHOOK_ALLOW": "127.0.0.1/32",
        "GENQ_WEBHOOK_SECRET": SECRET,
        "GENQ_SWEEP_INTERVAL_SECONDS": "1",
    }


def _ops_worker(
    env: dict[str, str],
    tmp: Path,
    name: str,
    pool: str = "threads",
    concurrency: int = OPS_CONCURRENCY,
) -> GenqProcess:
    argv = [
        "worker",
        "--lanes",
        "",
        "--queues",
        "webhooks,maintenance",
        "--pool",
        pool,
        "--concurrency",
        str(concurrency),
        "--name",
        name,
    ]
    return GenqProcess(argv, env, tmp / f"{name}.log").start()


def _wait_for(receiver: WebhookReceiver, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(receiver.received) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"receiver got {len(receiver.received)} of {count} webhooks")
        time.sleep(0.01)


def _wait_terminal(client: GenqClient, ids: list[str], timeout: float = 600) -> None:
    pending = set(ids)
    deadline = time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} jobs unfinished")
        page = client.store.list(tenant=None, status=JobStatus.SUCCEEDED, limit=len(ids) + 10)
        pending -= {r.id for r in page.records}
        time.sleep(0.05)


def _verify_all(receiver: WebhookReceiver) -> int:
    ids = set()
    for hit in receiver.hits():
        hit.verify(SECRET)
        ids.add(hit.webhook_id)
    return len(ids)


def throughput(
    tmp: Path,
    client: GenqClient,
    env: dict[str, str],
    receiver: WebhookReceiver,
    pool: str,
    concurrency: int,
) -> dict[str, Any]:
    receiver.received.clear()
    ids = [client.submit(CHAT).id for _ in range(THROUGHPUT_JOBS)]
    _wait_terminal(client, ids)  # every delivery now waits in genq.webhooks
    ops = _ops_worker(env, tmp, f"ops-{pool}", pool, concurrency)
    try:
        _wait_for(receiver, THROUGHPUT_JOBS, timeout=600)
    finally:
        ops.stop()
    arrivals = sorted(hit.at for hit in receiver.hits())
    span = arrivals[-1] - arrivals[0]
    unique = _verify_all(receiver)
    return {
        "events": len(arrivals),
        "unique_webhook_ids": unique,
        "seconds": span,
        "events_per_s": (len(arrivals) - 1) / span if span > 0 else float("nan"),
        "ops_worker": f"{pool} x{concurrency}",
    }


def latency(
    tmp: Path, client: GenqClient, env: dict[str, str], receiver: WebhookReceiver
) -> dict[str, Any]:
    ops = _ops_worker(env, tmp, "ops-latency")
    try:
        added = []
        for i in range(LATENCY_JOBS + 5):
            seen = len(receiver.received)
            job_id = client.submit(CHAT).id
            _wait_for(receiver, seen + 1, timeout=30)
            hit = receiver.hits()[-1]
            record = client.get(job_id)
            assert hit.verify(SECRET)["data"]["id"] == job_id
            assert record.finished_at is not None
            if i >= 5:  # the first few warm the ops worker's connections up
                added.append((hit.at - record.finished_at.timestamp()) * 1000)
    finally:
        ops.stop()
    return {
        "jobs": len(added),
        "p50_ms": median(added),
        "p99_ms": percentile(added, 99),
        "max_ms": max(added),
    }


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="genq-bench-webhooks-") as tmp_name:
        tmp = Path(tmp_name)
        with RedisServer(tmp / "redis") as redis_server, WebhookReceiver() as receiver:
            fake, fake_url = _fake_runtime(tmp)
            env = _env(redis_server.url, tmp, fake_url)
            settings = Settings(**{k[5:].lower(): v for k, v in env.items()})
            worker = GenqProcess(
                ["worker", "--concurrency", str(LLM_CONCURRENCY)], env, tmp / "worker.log"
            ).start()
            beat = GenqProcess(["beat"], env, tmp / "beat.log").start()
            client = GenqClient(settings)
            try:
                add_endpoint(
                    client.store, settings, tenant="default", url=receiver.url(), secret=SECRET
                )
                results = {
                    "throughput": throughput(
                        tmp, client, env, receiver, "threads", OPS_CONCURRENCY
                    ),
                    "throughput_prefork": throughput(
                        tmp, client, env, receiver, "prefork", PREFORK_CONCURRENCY
                    ),
                }
                receiver.received.clear()
                results["latency"] = latency(tmp, client, env, receiver)
            finally:
                client.close()
                beat.stop()
                worker.stop()
                fake.stop()
    lat = results["latency"]
    print("== webhooks ==")
    for key in ("throughput", "throughput_prefork"):
        t = results[key]
        print(
            f"delivery throughput: {t['events_per_s']:.0f} events/s ({t['events']} signed "
            f"deliveries, {t['unique_webhook_ids']} distinct ids, ops worker "
            f"{t['ops_worker']}, {t['seconds']:.2f} s)"
        )
    print(
        f"added latency terminal transition -> receiver over {lat['jobs']} jobs: "
        f"p50 {lat['p50_ms']:.1f} ms (target <= 50)  p99 {lat['p99_ms']:.1f} ms "
        f"(target <= 250)  max {lat['max_ms']:.1f} ms"
    )
    return results


if __name__ == "__main__":
    main()
