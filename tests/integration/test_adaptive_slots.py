"""Adaptive slots against the fake runtime over real HTTP: starting at 1 with a maximum of 10,
the controller (its state in a real Redis) finds the knee of a runtime whose throughput
saturates at 3 streams, and at 5."""

from __future__ import annotations

import collections

import pytest
import redis

from genq.fleet.adaptive import AdaptiveSlots
from tests.fakes.runtime_server import FakeRuntime
from tests.support.adaptive_load import SaturatingLoad

pytestmark = pytest.mark.integration

TOKENS = 24
TOKEN_SECONDS = 0.02
MAX_SLOTS = 10


@pytest.mark.timeout(240)
@pytest.mark.parametrize("knee", [3, 5])
def test_finds_the_knee_of_a_degrading_runtime(redis_url: str, knee: int) -> None:
    with FakeRuntime(
        tokens=["tok"] * TOKENS, token_delay_seconds=TOKEN_SECONDS, true_parallelism=knee
    ) as fake:
        slots = AdaptiveSlots(redis.Redis.from_url(redis_url), f"fake-{knee}", MAX_SLOTS)
        assert slots.limit() == 1
        load = SaturatingLoad(
            fake.url, model="fake-model", tokens=TOKENS, threads=MAX_SLOTS, slots=slots
        )
        # bounded: knee + 10 windows of 2 * limit requests of ~0.5 s take ~20 s on a quiet machine
        load.run(seconds=150, until=lambda: len(slots.controller().history) >= knee + 10)
    history = slots.controller().history
    assert len(history) >= knee + 10, f"only {len(history)} windows in 150 s: {history}"
    settled = history[knee + 2 :]
    assert all(knee - 1 <= limit <= knee + 1 for limit in settled), history
    most_common = collections.Counter(settled).most_common(1)[0][0]
    assert abs(most_common - knee) <= 1, history
