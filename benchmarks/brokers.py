"""Brokers benchmark: genq on Redis and on RabbitMQ, side by side in one run, PostgreSQL store.

For each broker, with the instant fake runtime and a worker of ``CONCURRENCY`` slots:
  * idle latency p50 (submit to terminal), genq vs a raw Celery no-op round trip on the same
    broker (raw Celery with publisher confirms on RabbitMQ, as genq publishes); the overhead
    is the difference of the two medians;
  * throughput over ``THROUGHPUT_JOBS`` jobs, genq vs raw Celery, alternating, median of
    ``ROUNDS`` rounds (target: genq >= 0.5 x raw Celery);
  * priority: 50 jobs of priority 1 queued, then one of priority 9: how many jobs started
    after it was queued and before it (target: no more than the slots in flight).
And RabbitMQ's queue design, measured with a Celery-like consumer (one channel, prefetch 1, late
acks, a consumer per queue): one classic queue with ``x-max-priority`` against one queue per
priority class, 50 messages queued (all priority 1, or spread over 0-8) then one of priority 9:
the p9 message's delivery position.

Run: ``python -m benchmarks brokers`` (always PostgreSQL; ``make bench`` runs it). RabbitMQ is
the machine's on 127.0.0.1:5672 when it answers (a vhost of the run's own), else a private node.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kombu import Connection, Consumer, Exchange, Queue

from benchmarks import raw_celery
from benchmarks.core import (
    CHAT,
    CONCURRENCY,
    _genq_rate,
    _raw_rate,
    _raw_worker,
    _wait_all_terminal,
    fake_runtime,
)
from benchmarks.stats import median
from benchmarks.stores import BenchStore
from genq.store import utcnow
from producers import GenqClient
from schemas import JobStatus
from tests.support import GenqProcess, RedisServer
from tests.support.environment import settings_from_env
from tests.support.rabbitmq import RabbitMQBroker, RabbitMQServer, machine_broker

ROUND_TRIPS = 100
THROUGHPUT_JOBS = 1000
ROUNDS = 3
QUEUED_AHEAD = 50
DESIGN_TRIES = 5


@contextmanager
def rabbitmq(tmp: Path) -> Iterator[RabbitMQBroker]:
    broker = machine_broker()
    if broker is not None:
        yield broker
        return
    with RabbitMQServer(tmp / "rabbitmq") as server:
        yield server.broker


def _priority_position(client: GenqClient) -> int:
    """Jobs started after the p9 job was queued and before it started."""
    low = [r.id for r in client.submit_many([{**CHAT, "priority": 1}] * QUEUED_AHEAD)]
    urgent = client.submit({**CHAT, "priority": 9})
    queued_at = utcnow()  # submit returned: the message is on the broker
    done = client.wait(urgent.id, timeout=120)
    assert done.status is JobStatus.SUCCEEDED and done.started_at is not None
    _wait_all_terminal(client, low)
    ahead = 0
    for job_id in low:
        started = client.get(job_id).started_at
        if started is not None and queued_at <= started < done.started_at:
            ahead += 1
    return ahead


def measure_broker(
    tmp: Path, store: BenchStore, redis_url: str, broker_url: str | None, fake_url: str
) -> dict[str, Any]:
    """genq and raw Celery on one broker (``broker_url``; None: Redis is the broker)."""
    kind = "rabbitmq" if broker_url else "redis"
    env = {
        "GENQ_REDIS_URL": redis_url,
        "GENQ_DATA_DIR": str(tmp / f"data-{kind}"),
        "GENQ_RUNTIME_URL": fake_url,
        "GENQ_RUNTIME_SLOTS": str(CONCURRENCY),
        "GENQ_DEFAULT_MODEL": "fake-model",
        "GENQ_LOG_LEVEL": "WARNING",
        **store.env(f"brokers_{kind}"),
        **({"GENQ_BROKER_URL": broker_url} if broker_url else {}),
    }
    raw_broker = broker_url or redis_url.rsplit("/", 1)[0] + "/1"
    backend = redis_url.rsplit("/", 1)[0] + "/2"
    worker = GenqProcess(
        ["worker", "--concurrency", str(CONCURRENCY)], env, tmp / f"worker-{kind}.log"
    ).start()
    raw = _raw_worker(tmp, raw_broker, f"raw-{kind}", backend=backend)
    os.environ.update(BENCH_REDIS_URL=raw_broker, BENCH_BACKEND_URL=backend)
    noop = raw_celery.make_app().tasks["raw.noop"]
    client = GenqClient(settings_from_env(env))
    try:
        noop.delay().get(timeout=60)
        client.wait(client.submit(CHAT).id, timeout=60)
        genq_lat, raw_lat = [], []
        for _ in range(ROUND_TRIPS):
            t0 = time.perf_counter()
            client.wait(client.submit(CHAT).id, timeout=30)
            genq_lat.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            noop.delay().get(timeout=30)
            raw_lat.append((time.perf_counter() - t0) * 1000)
        genq_rates, raw_rates = [], []
        for _ in range(ROUNDS):
            raw_rates.append(_raw_rate(noop, THROUGHPUT_JOBS))
            genq_rates.append(_genq_rate(client, THROUGHPUT_JOBS))
        positions = [_priority_position(client) for _ in range(3)]
    finally:
        client.close()
        raw.stop()
        worker.stop()
    return {
        "latency_ms": {
            "genq_p50": median(genq_lat),
            "raw_celery_p50": median(raw_lat),
            "overhead_p50": median(genq_lat) - median(raw_lat),
        },
        "throughput_jobs_per_s": {
            "genq": median(genq_rates),
            "raw_celery": median(raw_rates),
            "ratio": median(genq_rates) / median(raw_rates),
            "per_round": {"genq": genq_rates, "raw_celery": raw_rates},
        },
        "p9_started_behind": {"runs": positions, "max": max(positions), "slots": CONCURRENCY},
    }


def _design_position(url: str, per_class: bool, spread: bool) -> int:
    """Delivery position of a p9 message published after ``QUEUED_AHEAD`` lower ones, to a
    consumer like Celery's (one channel, prefetch 1, late acks, one consumer per queue)."""
    with Connection(url, transport_options={"confirm_publish": True}) as conn:
        channel = conn.channel()
        suffix = f"{time.monotonic_ns()}"
        if per_class:
            queues = [
                Queue(f"design.{suffix}.p{p}", Exchange(""), routing_key=f"design.{suffix}.p{p}")
                for p in range(10)
            ]
        else:
            one = Queue(
                f"design.{suffix}",
                Exchange(""),
                routing_key=f"design.{suffix}",
                queue_arguments={"x-max-priority": 10},
            )
            queues = [one] * 10
        for queue in set(queues):
            queue(channel).declare()
        producer = conn.Producer(channel)
        for i in range(QUEUED_AHEAD):
            p = i % 9 if spread else 1
            producer.publish({"p": p}, routing_key=queues[p].routing_key, priority=p)
        producer.publish({"p": 9}, routing_key=queues[9].routing_key, priority=9)
        order: list[int] = []

        def on_message(body: dict[str, int], message: Any) -> None:
            order.append(body["p"])
            message.ack()

        channel.basic_qos(0, 1, True)
        with Consumer(channel, list(dict.fromkeys(queues)), callbacks=[on_message]):
            while len(order) < QUEUED_AHEAD + 1:
                conn.drain_events(timeout=10)
        for queue in set(queues):
            queue(channel).delete()
        channel.close()
    return order.index(9)


def queue_design(url: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for per_class in (False, True):
        name = "queue_per_priority_class" if per_class else "x_max_priority"
        results[name] = {}
        for spread in (False, True):
            scenario = "spread_p0_p8" if spread else "all_p1"
            runs = [_design_position(url, per_class, spread) for _ in range(DESIGN_TRIES)]
            results[name][scenario] = {"median": median([float(r) for r in runs]), "runs": runs}
    return results


def main(store: str = "postgres") -> dict[str, Any]:
    """Always on PostgreSQL (the store beyond one machine), whatever ``--store`` says."""
    if store != "postgres":
        print("(brokers runs on PostgreSQL whatever --store says)")

    with tempfile.TemporaryDirectory(prefix="genq-bench-brokers-") as tmp_name:
        tmp = Path(tmp_name)
        with (
            BenchStore("postgres", tmp) as bench_store,
            RedisServer(tmp / "redis") as redis_server,
            rabbitmq(tmp) as rabbit,
        ):
            vhost = rabbit.add_vhost("genq-bench")
            fake, fake_url = fake_runtime(tmp)
            try:
                results: dict[str, Any] = {
                    "store": "postgres",
                    "redis": measure_broker(tmp, bench_store, redis_server.url, None, fake_url),
                    "rabbitmq": measure_broker(
                        tmp, bench_store, redis_server.url, rabbit.url(vhost), fake_url
                    ),
                    "rabbitmq_queue_design": queue_design(rabbit.url(vhost)),
                }
            finally:
                fake.stop()
                rabbit.delete_vhost(vhost)
    print("== brokers (PostgreSQL store, instant fake runtime) ==")
    for kind in ("redis", "rabbitmq"):
        r = results[kind]
        lat, thr, pos = r["latency_ms"], r["throughput_jobs_per_s"], r["p9_started_behind"]
        print(
            f"{kind:8s} idle p50 ms: genq {lat['genq_p50']:.1f} raw celery "
            f"{lat['raw_celery_p50']:.1f} overhead {lat['overhead_p50']:.1f}; throughput "
            f"jobs/s genq {thr['genq']:.0f} raw celery {thr['raw_celery']:.0f} ratio "
            f"{thr['ratio']:.2f} (target >= 0.5); p9 behind {QUEUED_AHEAD} queued: "
            f"{pos['runs']} started ahead (slots {pos['slots']})"
        )
    for design, scenarios in results["rabbitmq_queue_design"].items():
        shown = ", ".join(f"{s} median {v['median']:g} {v['runs']}" for s, v in scenarios.items())
        print(f"RabbitMQ design {design}: p9 delivery position {shown}")
    return results
