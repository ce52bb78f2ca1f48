"""Fair share between tenants, end to end (issue 13): real Redis, real worker processes, the
fleet's dispatcher, a fake runtime over real HTTP.

Tenant A queues 200 jobs, then tenant B 20 at the same priority: B's 20 do not wait behind A's
backlog. VTC lifts B's counter to A's when it arrives, then the two alternate, so B's 20th job
completes within the first 45 completions after B's first submit (2 slots in flight + 2 x 20)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import redis

from genq.fleet.fairness import FairShare
from schemas import JobRecord, JobStatus
from tests.fakes.runtime_server import FakeRuntime
from tests.integration.conftest import Stack
from tests.support import eventually

pytestmark = pytest.mark.integration

MODEL = "m-fair"
SLOTS = 2
TOKENS = 4  # the fake's answer; jobs ask for exactly this, so the estimate is the usage


def fleet_file(tmp_path: Path, url: str, slots: int | str = SLOTS) -> Path:
    path = tmp_path / "runtimes.toml"
    slots_value = f'"{slots}"' if isinstance(slots, str) else str(slots)
    path.write_text(
        "[[endpoints]]\n"
        'name = "fair"\n'
        'kind = "openai"\n'
        f'url = "{url}"\n'
        f'models = ["{MODEL}"]\n'
        f"slots = {slots_value}\n"
    )
    return path


def chat(i: int, priority: int = 5) -> dict[str, object]:
    return {
        "kind": "chat",
        "model": MODEL,
        "messages": [{"role": "user", "content": f"job {i}"}],
        "max_tokens": TOKENS,
        "priority": priority,
    }


def finished_at(record: JobRecord) -> datetime:
    assert record.finished_at is not None
    return record.finished_at


@pytest.fixture
def fair_runtime() -> FakeRuntime:
    with FakeRuntime(known_models=[MODEL], token_delay_seconds=0.02) as fake:
        yield fake  # type: ignore[misc]


@pytest.mark.timeout(400)
def test_a_small_tenant_is_not_stuck_behind_a_big_backlog(
    stack: Stack, fair_runtime: FakeRuntime, tmp_path: Path
) -> None:
    stack.env.update(
        {
            "GENQ_RUNTIMES_FILE": str(fleet_file(tmp_path, fair_runtime.url)),
            "GENQ_FLEET_SLOT_LEASE_SECONDS": "3",
            "GENQ_FLEET_TICK_SECONDS": "0.2",
        }
    )
    a, b = stack.client(tenant="tenant-a"), stack.client(tenant="tenant-b")
    stack.worker("--concurrency", "2", name="host-a")
    stack.worker("--concurrency", "2", name="host-b")
    a_ids = [a.submit(chat(i)).id for i in range(200)]
    # A's backlog is being served (and charged) when B arrives
    assert eventually(lambda: a.get(a_ids[5]).status is JobStatus.SUCCEEDED, timeout=60)
    b_ids = [b.submit(chat(i)).id for i in range(20)]
    b_submitted = b.get(b_ids[0]).created_at

    b_done = [b.wait(i, timeout=240) for i in b_ids]
    assert {r.status for r in b_done} == {JobStatus.SUCCEEDED}
    a_done = [a.wait(i, timeout=300) for i in a_ids]
    assert {r.status for r in a_done} == {JobStatus.SUCCEEDED}

    after = sorted((r for r in a_done + b_done if finished_at(r) > b_submitted), key=finished_at)
    b_positions = [n for n, r in enumerate(after, start=1) if r.tenant == "tenant-b"]
    assert len(b_positions) == 20
    assert b_positions[-1] <= 45, b_positions
    # ... and A was not starved either: it kept completing while B was served
    a_between = sum(1 for r in after[: b_positions[-1]] if r.tenant == "tenant-a")
    assert a_between >= 10, b_positions

    # The counters settled with the real usage: each tenant's is its jobs' real cost
    # (A's includes what it was charged before B arrived; B's starts from A's level then).
    fair = FairShare(redis.Redis.from_url(stack.env["GENQ_REDIS_URL"]), stack.settings)
    counters = fair.counters(MODEL)
    assert set(counters) == {"tenant-a", "tenant-b"}
    assert counters["tenant-a"] > counters["tenant-b"]  # A was served ten times as much


def test_priority_wins_over_fairness(
    stack: Stack, fair_runtime: FakeRuntime, tmp_path: Path
) -> None:
    """B's counter is below A's (A was served first and holds the slot), so at one priority B
    would go next; A's urgent jobs still go before B's ordinary ones."""
    stack.env.update(
        {
            "GENQ_RUNTIMES_FILE": str(fleet_file(tmp_path, fair_runtime.url, slots=1)),
            "GENQ_FLEET_SLOT_LEASE_SECONDS": "3",
            "GENQ_FLEET_TICK_SECONDS": "0.2",
        }
    )
    a, b = stack.client(tenant="tenant-a"), stack.client(tenant="tenant-b")
    served = [a.submit(chat(i)).id for i in range(10)]
    stack.worker("--concurrency", "1", name="host-a")
    for job_id in served:
        assert a.wait(job_id, timeout=60).status is JobStatus.SUCCEEDED
    fair_runtime.configure(job_delay_seconds=1.0)
    blocker = a.submit(chat(100)).id  # holds the one slot while the rest queue
    assert eventually(lambda: a.get(blocker).status is JobStatus.RUNNING, timeout=30)
    b_low = [b.submit(chat(i, priority=5)).id for i in range(3)]
    a_urgent = [a.submit(chat(i, priority=9)).id for i in range(3)]
    fair_runtime.configure(job_delay_seconds=0)
    records = [a.wait(i, timeout=60) for i in [blocker, *a_urgent]]
    records += [b.wait(i, timeout=60) for i in b_low]
    assert {r.status for r in records} == {JobStatus.SUCCEEDED}
    order = [r.id for r in sorted(records, key=lambda r: r.started_at or finished_at(r))]
    assert order == [blocker, *a_urgent, *b_low]
