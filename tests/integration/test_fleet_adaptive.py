"""Adaptive slots end to end: an endpoint declared with ``slots = "auto"``, real worker
processes reporting each request, the fleet's dispatcher reading the limit, a fake runtime whose
throughput saturates at 3 streams. From 1 slot it settles at 3 (±1), and never more requests
than the limit it had reach the runtime."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from genq.fleet.adaptive import AdaptiveSlots, Controller, state_key
from schemas import JobStatus
from tests.fakes.runtime_server import FakeRuntime, Fault
from tests.integration.conftest import Stack
from tests.support import eventually

pytestmark = pytest.mark.integration

KNEE = 3
MAX_SLOTS = 8
TOKENS = 16
MODEL = "m-auto"


@pytest.fixture
def knee_runtime() -> Iterator[FakeRuntime]:
    with FakeRuntime(
        known_models=[MODEL],
        tokens=["tok"] * TOKENS,
        token_delay_seconds=0.05,
        true_parallelism=KNEE,
    ) as fake:
        yield fake


@pytest.mark.timeout(400)
def test_auto_slots_settle_at_the_knee_through_the_workers(
    stack: Stack, knee_runtime: FakeRuntime, tmp_path: Path
) -> None:
    fleet = tmp_path / "runtimes.toml"
    fleet.write_text(
        "[[endpoints]]\n"
        'name = "auto"\n'
        'kind = "openai"\n'
        f'url = "{knee_runtime.url}"\n'
        f'models = ["{MODEL}"]\n'
        'slots = "auto"\n'
    )
    stack.env.update(
        {
            "GENQ_RUNTIMES_FILE": str(fleet),
            "GENQ_ADAPTIVE_MAX_SLOTS": str(MAX_SLOTS),
            "GENQ_FLEET_SLOT_LEASE_SECONDS": "3",
            "GENQ_FLEET_TICK_SECONDS": "0.2",
        }
    )
    slots = AdaptiveSlots(redis.Redis.from_url(stack.env["GENQ_REDIS_URL"]), "auto", MAX_SLOTS)
    assert slots.limit() == 1
    client = stack.client(tenant="load")
    stack.worker("--concurrency", str(MAX_SLOTS), name="host-a")
    request = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "go"}],
        "max_tokens": TOKENS,
    }
    for _ in range(300):  # more than it can finish in the time: always a backlog
        client.submit(request)

    assert eventually(lambda: len(slots.controller().history) >= KNEE + 10, timeout=300), (
        slots.controller().history
    )
    controller = slots.controller()
    history = controller.history
    seen = f"limits {history}; windows [limit, TPOT ms, TTFT ms, gradient] {controller.windows}"
    settled = history[KNEE + 2 :]
    assert all(KNEE - 1 <= limit <= KNEE + 1 for limit in settled), seen
    assert abs(collections.Counter(settled).most_common(1)[0][0] - KNEE) <= 1, seen
    # the dispatcher held the runtime to the limit: never more than the most it ever allowed
    assert knee_runtime.stats()["max_in_flight"] <= max(history), history


@pytest.mark.parametrize("refusal", [429, 503])
def test_a_runtime_refusing_work_halves_the_auto_slots(
    stack: Stack, tmp_path: Path, refusal: int
) -> None:
    """A 429 or 503 from an ``auto`` endpoint, reported by the worker whose request it refused:
    the limit halves (4 to 2) and holds while the job is retried and succeeds."""
    with FakeRuntime(known_models=[MODEL], tokens=["tok"] * 4) as fake:
        fleet = tmp_path / "runtimes.toml"
        fleet.write_text(
            f'[[endpoints]]\nname = "auto"\nkind = "openai"\nurl = "{fake.url}"\n'
            f'models = ["{MODEL}"]\nslots = "auto"\n'
        )
        stack.env.update(
            {"GENQ_RUNTIMES_FILE": str(fleet), "GENQ_ADAPTIVE_MAX_SLOTS": str(MAX_SLOTS)}
        )
        client = redis.Redis.from_url(stack.env["GENQ_REDIS_URL"])
        client.set(state_key("auto"), Controller(max_limit=MAX_SLOTS, limit=4).to_json())
        slots = AdaptiveSlots(client, "auto", MAX_SLOTS)
        assert slots.limit() == 4
        fake.fail_next.append(Fault.status(refusal, retry_after=0))
        stack.worker()
        producer = stack.client()
        job = producer.submit({"model": MODEL, "messages": [{"role": "user", "content": "go"}]})
        done = producer.wait(job.id, timeout=60)
        assert done.status is JobStatus.SUCCEEDED and done.attempts == 2
        controller = slots.controller()
        assert controller.limit == 2, controller.history
        assert controller.history[-1] == 2
        client.close()
