"""Recovery time after a whole host is killed (issue 14): with default settings, how long
until the jobs that were running on the lost host run again on another, on the Redis broker
and on RabbitMQ in the same run.

Each trial, on one Redis and one PostgreSQL database: host A (an LLM worker with 4 slots and
the beat that leads the sweep) starts 4 long jobs; host B (a worker and a following beat)
starts; every process of host A is killed with SIGKILL at once. Measured per job: the kill to
the job's next ``running`` transition on host B (the store's history time), and, to show where
the time goes, the kill to the sweep's requeue of it (``lease lapsed``). Default lease
(15 s, renewed every 5 s) and sweep interval (5 s), so the worst case is the lease running out
(10-15 s after the kill), host B's beat taking the lead (within 1.25 intervals) and sweeping
(within an interval), and host B's worker starting the re-sent job.

Jobs go through the fleet's backlog (the default): the runtime is a one-endpoint fleet of
``JOBS`` slots (``GENQ_RUNTIME_SLOTS``) shared by both hosts, and the slots host A held come
back when their leases lapse (``GENQ_FLEET_SLOT_LEASE_SECONDS``, 15 s) or when a worker gives
them back. On RabbitMQ (``GENQ_BROKER_URL=amqp://``, a vhost of each trial's own on the
machine's node or a private one, as ``benchmarks.brokers``; Redis still holds leases and
streams) the killed worker's unacked messages are redelivered to host B at once; host B skips
each (the job runs under host A's live lease, ``skipped:running``), so the jobs still come back
through the sweep; the skips are counted from host B's worker log.

Trials alternate between the brokers. The result keeps the Redis figures at the top level (as
before) and the same keys for RabbitMQ under ``"rabbitmq"``.
Run: ``python -m benchmarks hosts`` (always on PostgreSQL: hosts share the store over the
network), or ``make bench``; fewer trials: ``python -c 'from benchmarks import hosts;
hosts.main(trials=3)'``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, select

from benchmarks.brokers import rabbitmq
from benchmarks.stats import median
from benchmarks.stores import BenchStore
from genq import constants as c
from genq.store.recovery import RECOVERY_REASON_PREFIX
from genq.store.tables import job_history
from genq.sweep_records import current_leader, host_of
from producers import GenqClient
from schemas import JobStatus
from tests.fakes.runtime_server import FakeRuntime
from tests.support import RedisServer, eventually
from tests.support.environment import settings_from_env
from tests.support.hosts import Host
from tests.support.rabbitmq import RabbitMQBroker

TRIALS = 5
JOBS = 4
TARGET_SECONDS = 30.0
BROKERS = ("redis", "rabbitmq")
CHAT = {"messages": [{"role": "user", "content": "a long job"}], "max_tokens": 3000}
# 3000 tokens at 20 ms: a job outlives the trial.
LONG_JOB: dict[str, Any] = {"tokens": [f"t{i} " for i in range(3000)], "token_delay_seconds": 0.02}
# What a worker's log shows for a redelivered message whose job runs under a live lease.
SKIPPED_RUNNING = "skipped:running"


@dataclass
class TrialResult:
    seconds: list[float]  # per job, kill to running again on host B, sorted
    requeued: list[float]  # per job, kill to the sweep's requeue (its lease lapsed), sorted
    redeliveries_skipped: int  # messages host B's worker skipped: their job was still leased


def _last_transition(client: GenqClient, job_id: str, *where: ColumnElement[bool]) -> float | None:
    """When ``job_id`` last made a history transition matching ``where`` (unix time), if it
    did."""
    with client.store.engine.connect() as conn:
        row = conn.execute(
            select(job_history.c.at)
            .where(job_history.c.job_id == job_id, *where)
            .order_by(job_history.c.id.desc())
        ).first()
    return None if row is None else row[0].timestamp()


def _restarted_on(client: GenqClient, job_id: str, host: str) -> float | None:
    """When ``job_id`` last went ``running`` on ``host``, if it did."""
    return _last_transition(
        client,
        job_id,
        job_history.c.to_status == JobStatus.RUNNING.value,
        job_history.c.worker.like(f"%@{host}/%"),
    )


def _requeued(client: GenqClient, job_id: str) -> float | None:
    """When the sweep last put ``job_id`` back in the queue because its lease lapsed."""
    return _last_transition(
        client,
        job_id,
        job_history.c.to_status == JobStatus.QUEUED.value,
        job_history.c.reason.like(f"{RECOVERY_REASON_PREFIX}%"),
    )


def trial(tmp: Path, name: str, shared: dict[str, str], redis_server: RedisServer) -> TrialResult:
    """One host lost: the seconds from the kill until each of its jobs ran again."""
    with redis_server.client() as admin:
        admin.flushall()
    root = tmp / name
    settings = settings_from_env({**shared, "GENQ_DATA_DIR": str(root / "client")})
    host_a = Host.create("host-a", shared, root)
    host_b = Host.create("host-b", shared, root)
    client = GenqClient(settings)
    try:
        host_a.beat()
        host_a.worker(concurrency=JOBS)
        ids = [client.submit(CHAT).id for _ in range(JOBS)]
        if not eventually(
            lambda: all(client.get(j).status is JobStatus.RUNNING for j in ids), timeout=60
        ):
            raise RuntimeError(f"host A did not start its jobs:\n{host_a.processes[1].log_tail()}")
        host_b.beat()
        worker_b = host_b.worker(concurrency=JOBS)
        if host_of(current_leader(client.redis) or "") != "host-a":
            raise RuntimeError("host A's beat should lead (it started first)")
        killed_at = host_a.kill()
        restarted: dict[str, float] = {}

        def all_restarted() -> bool:
            for job in ids:
                if job not in restarted and (at := _restarted_on(client, job, "host-b")):
                    restarted[job] = at - killed_at
            return len(restarted) == len(ids)

        if not eventually(all_restarted, timeout=120, interval=0.1):
            history = client.get(ids[0], history=True).history or []
            raise RuntimeError(
                f"only {len(restarted)} of {JOBS} jobs ran again in 120 s; the first's history: "
                f"{[(h.to_status, h.worker, h.reason) for h in history]}\n"
                f"host B's worker:\n{worker_b.log_tail()}"
            )
        requeued = [at - killed_at for job in ids if (at := _requeued(client, job)) is not None]
        skipped = worker_b.log_path.read_text(errors="replace").count(SKIPPED_RUNNING)
        return TrialResult(
            sorted(round(s, 2) for s in restarted.values()),
            sorted(round(s, 2) for s in requeued),
            skipped,
        )
    finally:
        client.close()
        host_a.stop()
        host_b.stop()


def broker_trial(
    tmp: Path,
    index: int,
    broker: RabbitMQBroker | None,
    shared: dict[str, str],
    redis_server: RedisServer,
) -> TrialResult:
    """A trial on Redis (``broker`` None) or on a fresh vhost of ``broker``, deleted after."""
    if broker is None:
        return trial(tmp, f"redis-{index}", shared, redis_server)
    vhost = broker.add_vhost("genq-bench-hosts")
    try:
        env = {**shared, "GENQ_BROKER_URL": broker.url(vhost)}
        return trial(tmp, f"rabbitmq-{index}", env, redis_server)
    finally:
        broker.delete_vhost(vhost)


def summary(trials: list[TrialResult]) -> dict[str, Any]:
    worst = [max(t.seconds) for t in trials]
    return {
        "trials": [t.seconds for t in trials],
        "recovery_seconds_median": round(median([s for t in trials for s in t.seconds]), 1),
        "recovery_seconds_worst_median": round(median(worst), 1),
        "recovery_seconds_max": round(max(worst), 1),
        "requeued_seconds_median": round(median([s for t in trials for s in t.requeued]), 1),
        "redeliveries_skipped": [t.redeliveries_skipped for t in trials],
    }


def main(store: str = "postgres", trials: int = TRIALS) -> dict[str, Any]:
    """Redis's figures at the top level, RabbitMQ's (same keys) under ``"rabbitmq"``."""
    if store != "postgres":
        print("(hosts runs on PostgreSQL only: several hosts share the store over the network)")
    runs: dict[str, list[TrialResult]] = {kind: [] for kind in BROKERS}
    with tempfile.TemporaryDirectory(prefix="genq-bench-hosts-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "pg").mkdir()
        with (
            BenchStore("postgres", tmp / "pg") as bench_store,
            RedisServer(tmp / "redis") as redis_server,
            FakeRuntime(**LONG_JOB) as runtime,
            rabbitmq(tmp) as rabbit,
        ):
            for index in range(trials):
                for kind in BROKERS:  # alternating: both brokers see the same machine load
                    shared = {
                        "GENQ_REDIS_URL": redis_server.url,
                        "GENQ_RUNTIME_URL": runtime.url,
                        "GENQ_DEFAULT_MODEL": "fake-model",
                        # The one-endpoint fleet's slots, shared by both hosts: host A runs all.
                        "GENQ_RUNTIME_SLOTS": str(JOBS),
                        "GENQ_LOG_JSON": "false",
                        **bench_store.env(f"hosts_{kind}_{index}"),
                    }
                    broker = rabbit if kind == "rabbitmq" else None
                    done = broker_trial(tmp, index, broker, shared, redis_server)
                    runs[kind].append(done)
                    print(
                        f"hosts: {kind} trial {index + 1}: jobs ran again after {done.seconds} s"
                        f" (requeued by the sweep after {done.requeued} s; "
                        f"{done.redeliveries_skipped} redeliveries skipped as still leased)"
                    )
    slot_lease = settings_from_env({}).fleet_slot_lease_seconds
    redis, amqp = summary(runs["redis"]), summary(runs["rabbitmq"])
    result = {
        "lease_seconds": c.LEASE_SECONDS,
        "sweep_interval_seconds": c.SWEEP_INTERVAL_SECONDS,
        "fleet_slot_lease_seconds": slot_lease,
        "jobs_per_trial": JOBS,
        **redis,
        "target_seconds": TARGET_SECONDS,
        "rabbitmq": amqp,
    }
    print(
        f"hosts: a host lost with {JOBS} running jobs, default settings (lease "
        f"{c.LEASE_SECONDS} s, sweep every {c.SWEEP_INTERVAL_SECONDS} s, slot lease "
        f"{slot_lease:g} s), {trials} trials per broker: seconds until its jobs ran again on "
        f"the other host (target <= {TARGET_SECONDS:g} s)"
    )
    print(
        f"  {'broker':9s} {'median':>7s} {'last of trial, median':>22s} {'max':>6s} "
        f"{'requeued, median':>17s}  redeliveries skipped"
    )
    for kind, figures in (("redis", redis), ("rabbitmq", amqp)):
        print(
            f"  {kind:9s} {figures['recovery_seconds_median']:7.1f} "
            f"{figures['recovery_seconds_worst_median']:22.1f} "
            f"{figures['recovery_seconds_max']:6.1f} {figures['requeued_seconds_median']:17.1f}  "
            f"{figures['redeliveries_skipped']}"
        )
    return result


if __name__ == "__main__":
    main()
