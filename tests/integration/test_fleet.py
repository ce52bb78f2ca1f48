"""The runtime fleet's dispatch invariants, end to end (issue 13).

Real Redis, real worker processes (two, as two hosts would run them), three fake runtimes over
real HTTP, each limiting its own parallelism to its slots and recording the most requests it
ever had at once, every request that had to wait inside it, and each request's arrival.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from genq.fleet import keys
from producers.fleet_models import UnknownModel
from producers.submission import submit_job
from schemas import ErrorCode, JobRequest, JobStatus
from schemas.validation import parse
from tests.fakes.runtime_server import FakeRuntime
from tests.integration.conftest import Stack, both_brokers
from tests.support import eventually

# Three endpoints: "solo" (1 slot) alone serves m-solo; "pair" (2 slots) and "quad" (4 slots)
# share m-shared; quad also serves m-big.
ENDPOINTS = {"solo": (1, ["m-solo"]), "pair": (2, ["m-shared"]), "quad": (4, ["m-shared", "m-big"])}
TOKEN_DELAY = 0.02  # four tokens: ~0.1 s a job, so a backlog forms and slots fill


@pytest.fixture
def fakes() -> Iterator[dict[str, FakeRuntime]]:
    started = {}
    try:
        for name, (slots, models) in ENDPOINTS.items():
            fake = FakeRuntime(
                slots=slots,
                known_models=models,
                token_delay_seconds=TOKEN_DELAY,
                record_requests=True,
            )
            started[name] = fake.start()
        yield started
    finally:
        for fake in started.values():
            fake.stop()


def fleet_file(tmp_path: Path, fakes: dict[str, FakeRuntime], **slots: int) -> Path:
    lines = []
    for name, fake in fakes.items():
        declared_slots, models = ENDPOINTS[name]
        lines += [
            "[[endpoints]]",
            f'name = "{name}"',
            'kind = "openai"',
            f'url = "{fake.url}"',
            f"models = {models!r}".replace("'", '"'),
            f"slots = {slots.get(name, declared_slots)}",
            "",
        ]
    path = tmp_path / "runtimes.toml"
    path.write_text("\n".join(lines))
    return path


def use_fleet(stack: Stack, path: Path, **extra: str) -> None:
    stack.env.update(
        {
            "GENQ_RUNTIMES_FILE": str(path),
            "GENQ_FLEET_SLOT_LEASE_SECONDS": "3",
            "GENQ_FLEET_TICK_SECONDS": "0.2",
            **extra,
        }
    )


def chat(text: str, model: str, priority: int) -> dict[str, object]:
    return {
        "kind": "chat",
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "priority": priority,
    }


def released_now(stack: Stack) -> set[str]:
    """Jobs holding a slot (released to the broker) at this moment."""
    with redis.Redis.from_url(stack.env["GENQ_REDIS_URL"]) as client:
        return {v.decode() for v in client.hvals(keys.SLOT_JOBS)}


def test_fleet_routes_by_model_within_slots_in_priority_then_submission_order(
    stack: Stack, fakes: dict[str, FakeRuntime], tmp_path: Path
) -> None:
    use_fleet(stack, fleet_file(tmp_path, fakes))
    models = ["m-solo", "m-shared", "m-big"]
    mix = itertools.cycle(itertools.product(models, [2, 5, 8], ["tenant-a", "tenant-b"]))
    plan = [next(mix) for _ in range(300)]
    clients = {t: stack.client(tenant=t) for t in ("tenant-a", "tenant-b")}
    # Submitted before any worker runs: what has a slot is released at once (excluded from
    # the order check below: it was released before the rest existed), the rest waits.
    ids = [
        clients[tenant].submit(chat(f"job {i}", model, priority)).id
        for i, (model, priority, tenant) in enumerate(plan)
    ]
    early = released_now(stack)
    assert len(early) <= sum(slots for slots, _ in ENDPOINTS.values())
    hosts = [stack.worker("--concurrency", "4", name=n, ready=False) for n in ("host-a", "host-b")]
    for host in hosts:  # two starting at once on a loaded machine: give them time
        host.wait_for_log("ready.", timeout=120)

    records = [clients[plan[n][2]].wait(i, timeout=240) for n, i in enumerate(ids)]
    assert Counter(r.status for r in records) == {JobStatus.SUCCEEDED: 300}

    stats = {name: fake.stats() for name, fake in fakes.items()}
    for name, (slots, served) in ENDPOINTS.items():
        assert stats[name]["max_in_flight"] <= slots, (name, stats[name]["max_in_flight"])
        assert stats[name]["waited_inside"] == 0, name  # nothing waited inside a runtime
        assert {e["model"] for e in stats[name]["request_log"]} <= set(served), name
    assert stats["quad"]["max_in_flight"] >= 2  # the slots were used, not serialised

    # Each job ran once, on an endpoint serving its model.
    arrivals = {}
    for stat in stats.values():
        for entry in stat["request_log"]:
            index = int(entry["prompt"].split()[1])
            assert index not in arrivals, f"job {index} ran twice"
            arrivals[index] = entry["t"]
    assert len(arrivals) == 300

    # Start order per model: priority descending, then submission order (within a tenant:
    # fair share may interleave tenants at equal priority). Jobs released at the same moment
    # race through the broker to the workers, so a job may start after a few that should have
    # gone first, never more than the model's slots.
    for model in models:
        window = sum(slots for slots, served in ENDPOINTS.values() if model in served)
        jobs = [i for i, (m, _, _) in enumerate(plan) if m == model and ids[i] not in early]

        def before(k: int, j: int) -> bool:
            (_, pk, tk), (_, pj, tj) = plan[k], plan[j]
            return pk > pj or (pk == pj and tk == tj and k < j)

        for j in jobs:
            overtaken = [k for k in jobs if before(k, j) and arrivals[k] > arrivals[j]]
            assert len(overtaken) <= window, (model, j, plan[j], len(overtaken))


@both_brokers
def test_the_start_order_is_made_in_genq_the_same_on_both_brokers(
    stack: Stack, fakes: dict[str, FakeRuntime], tmp_path: Path, broker: str
) -> None:
    """One slot: jobs start exactly in priority-then-submission order, whatever the broker's
    own order would be (on Redis a list per priority step, on RabbitMQ a priority queue)."""
    solo = fakes["solo"]
    use_fleet(stack, fleet_file(tmp_path, {"solo": solo}))
    client = stack.client()
    first = client.submit(chat("job first", "m-solo", 0)).id  # takes the slot at once
    priorities = [(i * 7) % 10 for i in range(30)]
    ids = [client.submit(chat(f"job {i}", "m-solo", p)).id for i, p in enumerate(priorities)]
    stack.worker("--concurrency", "2")
    records = [client.wait(i, timeout=120) for i in [first, *ids]]
    assert {r.status for r in records} == {JobStatus.SUCCEEDED}
    started = [e["prompt"] for e in solo.stats()["request_log"]]
    expected = sorted(range(30), key=lambda i: (-priorities[i], i))
    assert started == ["job first", *(f"job {i}" for i in expected)], (broker, started)


def test_a_shared_model_survives_losing_one_endpoint_nothing_lost_or_doubled(
    stack: Stack, fakes: dict[str, FakeRuntime], tmp_path: Path
) -> None:
    use_fleet(stack, fleet_file(tmp_path, fakes), GENQ_FLEET_BREAKER_FAILURES="1")
    stack.worker("--concurrency", "6", name="host-a")
    client = stack.client()
    ids = [client.submit(chat(f"job {i}", "m-shared", 5)).id for i in range(60)]
    assert eventually(lambda: fakes["pair"].stats()["streams_completed"] >= 5, timeout=60)
    fakes["pair"].stop()  # a runtime that dies mid-run: its streams are cut
    pair_done = fakes["pair"].stats()["streams_completed"]

    records = [client.wait(i, timeout=120) for i in ids]
    assert Counter(r.status for r in records) == {JobStatus.SUCCEEDED: 60}, records
    quad_done = fakes["quad"].stats()["streams_completed"]
    assert pair_done + quad_done == 60  # every job generated exactly once to its end
    assert fakes["quad"].stats()["max_in_flight"] <= 4


def test_a_killed_worker_gives_its_slots_back_within_twice_the_lease(
    stack: Stack, fakes: dict[str, FakeRuntime], tmp_path: Path
) -> None:
    lease = 3.0
    pair = fakes["pair"]
    pair.configure(token_delay_seconds=5.0)  # its jobs outlive the kill
    use_fleet(stack, fleet_file(tmp_path, {"pair": pair}), GENQ_FLEET_SLOT_LEASE_SECONDS=str(lease))
    doomed = stack.worker("--concurrency", "2", name="doomed")
    client = stack.client()
    for i in range(2):
        client.submit(chat(f"job {i}", "m-shared", 5))
    assert eventually(lambda: pair.stats()["in_flight"] == 2, timeout=60)
    survivor = stack.worker("--concurrency", "2", name="survivor")
    client.submit(chat("job later", "m-shared", 5))
    # Both slots are held by the doomed worker: the later job waits in genq's backlog.
    assert sorted(e["prompt"] for e in pair.stats()["request_log"]) == ["job 0", "job 1"]
    assert survivor.running

    killed_at = time.time()
    doomed.kill()  # SIGKILL, the whole process group: nothing gives its slots back

    def later_started() -> float | None:
        log = pair.stats()["request_log"]
        return next((e["t"] for e in log if e["prompt"] == "job later"), None)

    assert eventually(lambda: later_started() is not None, timeout=30)
    started = later_started()
    assert started is not None
    assert started - killed_at <= 2 * lease, started - killed_at


def test_the_single_runtime_settings_dispatch_as_a_one_endpoint_fleet(
    stack: Stack, fake_runtime: FakeRuntime
) -> None:
    """GENQ_FLEET_DISPATCH=true with GENQ_RUNTIME_URL: the same dispatcher, one endpoint that
    takes any model, GENQ_RUNTIME_SLOTS its slots, even with more worker processes than that."""
    fake_runtime.configure(token_delay_seconds=0.02, record_requests=True)
    stack.env.update(
        {"GENQ_FLEET_DISPATCH": "true", "GENQ_RUNTIME_SLOTS": "2", "GENQ_FLEET_TICK_SECONDS": "0.2"}
    )
    stack.worker("--concurrency", "4")
    client = stack.client()
    ids = [client.submit(chat(f"job {i}", "fake-model", 5)).id for i in range(20)]
    records = [client.wait(i, timeout=120) for i in ids]
    assert {r.status for r in records} == {JobStatus.SUCCEEDED}
    stats = fake_runtime.stats()
    assert stats["max_in_flight"] == 2  # used both slots, never more
    ran = sorted(e["prompt"] for e in stats["request_log"])
    assert ran == sorted(f"job {i}" for i in range(20))  # each once


def test_a_model_no_endpoint_serves_is_refused_at_submit_or_fails_at_once(
    stack: Stack, fakes: dict[str, FakeRuntime], tmp_path: Path
) -> None:
    """GenqClient refuses such a job at submit, as the gateway does (model_not_found, listing
    the models there are). One that reaches the backlog anyway (a producer that skips the
    check, a model the fleet stopped serving) fails with model_not_found as soon as a worker's
    tick sees that no endpoint serves it, without waiting GENQ_RUNTIME_WAIT_SECONDS or spending
    retries."""
    solo = fakes["solo"]
    use_fleet(stack, fleet_file(tmp_path, {"solo": solo}), GENQ_RUNTIME_WAIT_SECONDS="600")
    stack.worker("--concurrency", "2")
    client = stack.client()
    with pytest.raises(UnknownModel) as refused:
        client.submit(chat("job nope", "nope", 5))
    assert refused.value.code is ErrorCode.MODEL_NOT_FOUND
    assert refused.value.details[0]["models"] == ["m-solo"]
    with pytest.raises(UnknownModel):
        client.submit_many([chat("job solo", "m-solo", 5), chat("job nope", "nope", 5)])
    assert client.store.count_queued(tenant="default") == 0  # a refused batch stores nothing
    unchecked = parse(JobRequest, chat("job nope", "nope", 5))
    unknown = submit_job(client.app, client.store, client.settings, unchecked)[0].id
    known = client.submit(chat("job solo", "m-solo", 5)).id
    failed = client.wait(unknown, timeout=60)
    assert failed.status is JobStatus.FAILED, failed
    assert failed.error is not None and failed.error.code == "model_not_found"
    assert failed.attempts == 1
    assert client.wait(known, timeout=60).status is JobStatus.SUCCEEDED
    assert [e["model"] for e in solo.stats()["request_log"]] == ["m-solo"]
