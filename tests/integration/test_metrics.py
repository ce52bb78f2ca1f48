"""Metrics move with the jobs: a real exporter process scraped while a real worker runs jobs."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from genq.metrics import build_registry, metrics_app, render_metrics
from schemas import JobStatus
from tests.fakes.runtime_server import FakeRuntime, Fault
from tests.integration.conftest import Stack
from tests.support import GenqProcess, eventually, free_port
from tests.support.environment import process_env, settings_from_env
from tests.support.processes import REPO_ROOT

pytestmark = pytest.mark.integration

CHAT = {"messages": [{"role": "user", "content": "say hello"}], "lane": "batch"}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class Exporter:
    def __init__(self, stack: Stack, start_genq: Callable[..., GenqProcess]) -> None:
        self.port = free_port()
        env = {**stack.env, "GENQ_METRICS_PORT": str(self.port)}
        self.process = start_genq(["metrics"], env, name="metrics")
        self.process.wait_for_log("serving metrics", timeout=30)

    def scrape(self) -> Samples:
        response = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=10)
        response.raise_for_status()
        return _parse(response.text)

    def wait_for(self, check: Callable[[Samples], bool], timeout: float = 30.0) -> Samples:
        scraped: list[Samples] = []

        def matches() -> bool:
            scraped.append(self.scrape())
            return check(scraped[-1])

        assert eventually(matches, timeout=timeout, interval=0.3), (
            f"metrics never matched; last scrape: {scraped[-1]}"
        )
        return scraped[-1]


def test_metrics_follow_jobs_from_queue_to_finish(
    stack: Stack, fake_runtime: FakeRuntime, start_genq: Callable[..., GenqProcess]
) -> None:
    exporter = Exporter(stack, start_genq)
    client = stack.client()
    before = exporter.scrape()
    assert _value(before, "genq_component_up", component="broker") == 1
    assert _value(before, "genq_component_up", component="store") == 1
    assert _value(before, "genq_jobs_finished_total", lane="batch", status="succeeded") == 0

    # No worker yet: the runtime's one slot (GENQ_RUNTIME_SLOTS, default 1) lets the first job
    # into the broker, in its priority's list; the others wait for a slot in genq's backlog.
    jobs = [client.submit({**CHAT, "priority": p}) for p in (9, 9, 2)]
    waiting = exporter.scrape()
    assert _value(waiting, "genq_queue_depth", lane="batch", priority="9") == 1
    assert _value(waiting, "genq_queue_depth", lane="batch", priority="2") == 0
    assert _value(waiting, "genq_queue_messages", queue="genq.batch") == 1
    assert _value(waiting, "genq_runtime_in_flight", endpoint="default") == 1
    assert _value(waiting, "genq_fleet_waiting", model="fake-model") == 2
    waiting_at = {
        p: _value(waiting, "genq_fleet_waiting_by_priority", model="fake-model", priority=p)
        for p in "9210"
    }
    assert waiting_at == {"9": 1, "2": 1, "1": 0, "0": 0}
    assert _value(waiting, "genq_jobs", lane="batch", status="queued") == 3

    fake_runtime.fail_next.append(Fault.status(503, retry_after=0))  # one retry
    stack.worker()
    for job in jobs:
        assert client.wait(job.id, timeout=30).status is JobStatus.SUCCEEDED
    done = exporter.wait_for(
        lambda s: _value(s, "genq_jobs_finished_total", lane="batch", status="succeeded") == 3
    )
    assert _value(done, "genq_queue_depth", lane="batch", priority="9") == 0
    assert _value(done, "genq_fleet_waiting", model="fake-model") == 0
    assert _value(done, "genq_fleet_waiting_by_priority", model="fake-model", priority="2") == 0
    assert _value(done, "genq_jobs", lane="batch", status="succeeded") == 3
    assert _value(done, "genq_retries_recorded") == 1
    assert _value(done, "genq_completion_tokens_total", lane="batch") == 12  # 4 tokens each
    for histogram in (
        "genq_job_queue_wait_seconds",
        "genq_job_time_to_first_token_seconds",
        "genq_completion_tokens_per_second",
    ):
        assert _value(done, f"{histogram}_count", lane="batch") == 3, histogram
    assert _value(done, "genq_job_duration_seconds_count", lane="batch", kind="chat") == 3
    assert _value(done, "genq_job_queue_wait_seconds_sum", lane="batch") > 0

    # Retries run out: a dead letter, counted by reason and as a finished job.
    fake_runtime.fail_next.extend([Fault.status(503, retry_after=0)] * 10)
    dead = client.submit(CHAT)
    assert client.wait(dead.id, timeout=40).status is JobStatus.DEAD_LETTERED
    lettered = exporter.wait_for(
        lambda s: _value(s, "genq_jobs_finished_total", lane="batch", status="dead_lettered") == 1
    )
    assert _value(lettered, "genq_dead_letters_recorded", reason="retries_exhausted") == 1
    assert _value(lettered, "genq_retries_recorded") == 1 + 3
    # Counted once each, however often the exporter is scraped.
    again = exporter.scrape()
    assert _value(again, "genq_jobs_finished_total", lane="batch", status="succeeded") == 3


def test_gateway_app_and_stats_report_the_same_store(stack: Stack) -> None:
    client = stack.client()
    client.submit({**CHAT, "priority": 7})

    async def scrape_app() -> str:  # the ASGI app the gateway mounts at /metrics
        transport = httpx.ASGITransport(app=metrics_app(stack.settings))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            return (await http.get("/metrics")).text

    served = _parse(asyncio.run(scrape_app()))
    assert _value(served, "genq_queue_depth", lane="batch", priority="7") == 1

    result = subprocess.run(
        [sys.executable, "-m", "genq", "stats"],
        env=process_env({**stack.env, "COLUMNS": "200"}),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Queue depth" in result.stdout and "Jobs in the store" in result.stdout
    batch_row = next(line for line in result.stdout.splitlines() if "│ batch" in line)
    cells = [cell.strip() for cell in batch_row.split("│") if cell.strip()]
    assert cells[0] == "batch" and cells[3] == "1"  # columns: lane, p9, p8, p7, ...


@pytest.mark.chaos
def test_lease_recovery_is_counted(
    stack: Stack, fake_runtime: FakeRuntime, start_genq: Callable[..., GenqProcess]
) -> None:
    exporter = Exporter(stack, start_genq)
    fake_runtime.configure(tokens=[f"t{i} " for i in range(40)], token_delay_seconds=0.25)
    worker = stack.worker(name="doomed")
    client = stack.client()
    record = client.submit(CHAT)
    running = eventually(lambda: client.get(record.id).status is JobStatus.RUNNING, timeout=20)
    assert running, "the job never started"
    worker.kill()  # no hand-back: only the lapsed lease tells the sweep
    stack.ops_worker()
    stack.beat()
    recovered = exporter.wait_for(lambda s: _value(s, "genq_lease_recoveries_recorded") == 1)
    assert _value(recovered, "genq_retries_recorded") == 0
    fake_runtime.configure(token_delay_seconds=0.0)
    stack.worker(name="survivor")
    assert client.wait(record.id, timeout=30).status is JobStatus.SUCCEEDED


def test_a_store_it_cannot_reach_reads_as_down_and_the_broker_still_reads(redis_url: str) -> None:
    settings = settings_from_env(
        {
            "GENQ_REDIS_URL": redis_url,
            "GENQ_DATABASE_URL": f"postgresql+psycopg://genq@127.0.0.1:{free_port()}/genq",
        }
    )
    registry, collector = build_registry(settings)
    try:
        samples = _parse(render_metrics(registry).decode())
    finally:
        collector.close()
    assert _value(samples, "genq_component_up", component="store") == 0
    assert _value(samples, "genq_component_up", component="broker") == 1
