"""A whole host lost: two "hosts" on this machine (each its own host name, data dir and process
groups: LLM worker, ops worker, beat, gateway), one shared Redis (AOF), PostgreSQL store, broker,
LLM runtime and webhook receiver. 500 jobs with webhooks and reply queues go in through both
gateways (a client that fails over like a load balancer, retrying with the same
Idempotency-Key); every process of host A is killed with SIGKILL mid-run; host B finishes
everything. Then a second run of 500 with host A back, during which Redis is killed and
restarted from its AOF. Both runs: 500 terminal jobs, none lost, none settled twice, one
webhook event and one reply per job. On both brokers (Redis, RabbitMQ); on RabbitMQ, Redis
still holds the streams, rate limits, replies and the sweep leader's lease.

Bounded: the fake runtime answers in 0.1-0.3 s; the test's figures are printed (``-s``).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import ColumnElement, Engine, func, select

from genq.store import build_engine
from genq.store.tables import job_history, jobs, webhook_events
from producers import GenqClient
from producers.api_keys import ApiKeyStore
from schemas import JobStatus
from tests.fakes.runtime_server import FakeRuntime
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.integration.conftest import FAST_TIMINGS, both_brokers
from tests.support import RedisServer, eventually
from tests.support.environment import settings_from_env
from tests.support.hosts import Host

pytestmark = [
    pytest.mark.integration,
    pytest.mark.postgres,
    pytest.mark.chaos,
    pytest.mark.slow,
    pytest.mark.timeout(900),
]

JOBS = 500
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TERMINAL = [s.value for s in JobStatus if s.terminal]
# Whole runs of 500 jobs through kills and restarts on a shared 2-core machine.
RUN_SECONDS = 300.0
# Does a run's fault: when (unix time), and figures to print.
Fault = Callable[[], tuple[float, dict[str, object]]]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        yield server


def _figures(name: str, **numbers: object) -> None:
    print(f"\n[hosts:{name}] " + " ".join(f"{k}={v}" for k, v in numbers.items()))


class Submitter:
    """Submits jobs through the gateways in turn; a gateway that does not answer, or answers
    503, is skipped for the other (a load balancer's failover), retrying with the job's
    Idempotency-Key, so a request that reached a dying gateway never becomes a second job."""

    def __init__(self, urls: list[str], key: str, body: Mapping[str, Any]) -> None:
        self.clients = [
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=15)
            for url in urls
        ]
        self.body = body
        self.failovers = 0
        self._lock = threading.Lock()
        self.pool = ThreadPoolExecutor(4)

    def submit(self, idempotency_key: str, turn: int) -> str:
        deadline = time.monotonic() + 120
        order = self.clients[turn % 2 :] + self.clients[: turn % 2]
        while time.monotonic() < deadline:
            for api in order:
                try:
                    answer = api.post(
                        "/v1/jobs", json=self.body, headers={"Idempotency-Key": idempotency_key}
                    )
                except httpx.TransportError:
                    answer = None
                if answer is not None and answer.status_code in (200, 201):
                    return str(answer.json()["id"])
                if answer is not None and answer.status_code != 503:
                    raise AssertionError(f"{answer.status_code}: {answer.text}")
                with self._lock:
                    self.failovers += 1
            time.sleep(0.2)  # neither answered (Redis restarting): back off, then again
        raise AssertionError(f"job {idempotency_key} not accepted by any gateway in 120 s")

    def submit_all(self, run: str, count: int) -> list[Future[str]]:
        return [self.pool.submit(self.submit, f"{run}-{i}", i) for i in range(count)]

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        for client in self.clients:
            client.close()


def _count(engine: Engine, *where: ColumnElement[bool]) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(jobs).where(*where)).scalar() or 0)


def _running_on(engine: Engine, host: str) -> int:
    return _count(
        engine, jobs.c.status == JobStatus.RUNNING.value, jobs.c.worker_id.like(f"%@{host}/%")
    )


def _finished(engine: Engine, ids: set[str]) -> int:
    return _count(engine, jobs.c.status.in_(TERMINAL), jobs.c.id.in_(ids))


def _check_run(
    name: str,
    ids: list[str],
    client: GenqClient,
    receiver: WebhookReceiver,
    reply_queue: str,
    runtime: FakeRuntime,
    since: tuple[float, int],
    **figures: object,
) -> None:
    """Every job of the run terminal and succeeded, settled once, one webhook event (delivered)
    and one reply each. ``since``: when the run's fault happened, and how many requests the
    runtime had seen at its start."""
    wanted = set(ids)
    engine = client.store.engine
    assert eventually(lambda: _finished(engine, wanted) == JOBS, timeout=RUN_SECONDS, interval=1)
    figures["finished_seconds_after_fault"] = round(time.time() - since[0], 1)
    # Generations cut off by the fault (or done but not recorded in time) and run again.
    figures["runtime_requests_repeated"] = runtime.stats()["requests_seen"] - since[1] - JOBS
    records = [r for r in client.store.list(tenant=None, limit=10_000).records if r.id in wanted]
    statuses = Counter(r.status for r in records)
    with client.store.engine.connect() as conn:
        settled = Counter(
            row[0]
            for row in conn.execute(
                select(job_history.c.job_id).where(
                    job_history.c.to_status == JobStatus.SUCCEEDED.value,
                    job_history.c.job_id.in_(wanted),
                )
            )
        )
        events = Counter(
            row[0]
            for row in conn.execute(
                select(webhook_events.c.job_id).where(webhook_events.c.job_id.in_(wanted))
            )
        )
        recovered = conn.execute(
            select(func.count())
            .select_from(job_history)
            .where(job_history.c.job_id.in_(wanted), job_history.c.reason.like("lease lapsed%"))
        ).scalar()

    def delivered() -> dict[str, set[str]]:
        by_job: dict[str, set[str]] = {}
        for hit in receiver.hits():
            job = json.loads(hit.body)["data"]["id"]
            if job in wanted:
                by_job.setdefault(job, set()).add(hit.webhook_id)
        return by_job

    assert eventually(lambda: len(delivered()) == JOBS, timeout=120, interval=0.5), len(delivered())
    deliveries = delivered()
    replies = Counter(r.id for r in client.replies(reply_queue, timeout=5))
    _figures(
        name,
        accepted=len(wanted),
        succeeded=statuses[JobStatus.SUCCEEDED],
        lost=len(wanted) - statuses[JobStatus.SUCCEEDED],
        settled_twice=sum(n > 1 for n in settled.values()),
        webhook_events=sum(events.values()),
        webhook_ids_delivered=sum(len(v) for v in deliveries.values()),
        replies=sum(replies.values()),
        recovered_after_lapse=recovered,
        **figures,
    )
    assert len(ids) == len(wanted) == JOBS  # one job per Idempotency-Key, none twice
    assert statuses == Counter({JobStatus.SUCCEEDED: JOBS}), statuses
    assert set(settled) == wanted and max(settled.values()) == 1  # none completed twice
    assert set(events) == wanted and max(events.values()) == 1  # one webhook event per job
    assert all(len(v) == 1 for v in deliveries.values())  # ... delivered under one id
    assert set(replies) == wanted and max(replies.values()) == 1, replies.most_common(3)


@both_brokers
def test_a_host_killed_mid_run_then_redis_restarted(
    broker: str,
    tmp_path: Path,
    fresh_postgres_url: str,
    receiver: WebhookReceiver,
    request: pytest.FixtureRequest,
) -> None:
    with (
        FakeRuntime(job_delay_seconds=(0.1, 0.3)) as runtime,
        RedisServer(tmp_path / "redis", aof=True) as redis_server,
    ):
        shared = {
            **FAST_TIMINGS,
            "GENQ_REDIS_URL": redis_server.url,
            "GENQ_DATABASE_URL": fresh_postgres_url,
            "GENQ_RUNTIME_URL": runtime.url,
            # The fake runtime runs any number at once: its slots (shared by the hosts) are both
            # hosts' LLM worker processes, so host A dies with jobs in flight.
            "GENQ_RUNTIME_SLOTS": "8",
            "GENQ_DEFAULT_MODEL": "fake-model",
            "GENQ_WEBHOOK_ALLOW": "127.0.0.1/32",
            "GENQ_WEBHOOK_SECRET": SECRET,
            "GENQ_CRASH_LIMIT": "10",
            # A message popped by a worker killed before kombu recorded it as unacked is lost
            # with it: the sweep re-sends its job after this long. Likewise a reply claimed by
            # a killed publisher is taken over after REPLY_CLAIM_SECONDS.
            "GENQ_REDISPATCH_AFTER_SECONDS": "8",
            "GENQ_REPLY_CLAIM_SECONDS": "3",
            "GENQ_RATE_LIMIT_PER_SECOND": "1000",
            "GENQ_RATE_LIMIT_BURST": "2000",
        }
        if broker == "rabbitmq":  # Redis keeps streams, limits, replies and the leader lease
            shared["GENQ_BROKER_URL"] = request.getfixturevalue("rabbitmq_url")
        settings = settings_from_env({**shared, "GENQ_DATA_DIR": str(tmp_path / "client")})
        hosts: list[Host] = []

        def start_host(name: str) -> tuple[Host, str]:
            host = Host.create(name, shared, tmp_path)
            hosts.append(host)
            host.worker()
            host.ops_worker()
            host.beat()
            return host, host.gateway()

        client = GenqClient(settings)
        store = client.store.engine

        def run(name: str, urls: list[str], ready: Callable[[], bool], fault: Fault) -> None:
            """500 jobs through ``urls``; ``fault`` once 100 are done and ``ready()``."""
            queue = f"hosts.replies.{uuid.uuid4().hex[:8]}"
            body = {
                "messages": [{"role": "user", "content": "a host is lost"}],
                "reply_to": queue,
                "webhook_url": receiver.url(),
            }
            submitter = Submitter(urls, key, body)
            requests_before = runtime.stats()["requests_seen"]
            pending = submitter.submit_all(name, JOBS)
            ids_so_far = _ids_once_submitted_or(pending, client)
            assert eventually(
                lambda: _finished(store, ids_so_far()) >= 100 and ready(),
                timeout=RUN_SECONDS,
                interval=0.25,
            ), f"{name}: never ready for its fault"
            fault_at, figures = fault()
            ids = [job.result(timeout=RUN_SECONDS) for job in pending]
            figures["gateway_failovers"] = submitter.failovers
            submitter.close()
            _check_run(
                f"{broker}:{name}",
                ids,
                client,
                receiver,
                queue,
                runtime,
                (fault_at, requests_before),
                **figures,
            )

        try:
            host_a, url_a = start_host("host-a")
            _host_b, url_b = start_host("host-b")
            engine = build_engine(settings.store_url)
            _row, key = ApiKeyStore(engine).create("acme")
            engine.dispose()

            def kill_host_a() -> tuple[float, dict[str, object]]:
                running = _running_on(store, "host-a")
                return host_a.kill(), {"running_on_a_at_kill": running}

            def restart_redis() -> tuple[float, dict[str, object]]:
                at = time.time()
                redis_server.kill()
                redis_server.start()  # from its AOF, on the same port
                return at, {}

            # Run 1: host A is lost mid-run, while it runs jobs.
            run(
                "host-a-killed",
                [url_a, url_b],
                lambda: _running_on(store, "host-a") > 0,
                kill_host_a,
            )
            # Run 2: host A is back (a replaced machine); Redis is killed and restarted.
            _host_a, url_a = start_host("host-a")
            run("redis-restarted", [url_a, url_b], lambda: True, restart_redis)
        finally:
            client.close()
            for host in hosts:
                host.stop()


def _ids_once_submitted_or(
    pending: list[Future[str]], client: GenqClient
) -> Callable[[], set[str]]:
    """The run's job ids: those accepted so far, and the jobs the store holds that were not
    there before the run (one accepted by a gateway whose answer is still on its way)."""
    before = {r.id for r in client.store.list(tenant=None, limit=10_000).records}

    def ids() -> set[str]:
        if all(job.done() for job in pending):
            return {job.result() for job in pending}
        return {r.id for r in client.store.list(tenant=None, limit=10_000).records} - before

    return ids
