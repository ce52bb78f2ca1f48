"""Adaptive slots: the controller's decisions against a modelled runtime, and its Redis state."""

from __future__ import annotations

import random
import threading
from types import SimpleNamespace

import pytest
import redis

from genq.fleet.adaptive import (
    HOLD_WINDOWS,
    TOLERANCE,
    AdaptiveSlots,
    Controller,
    Sample,
    current_limit,
    gradient,
)

TOKEN_SECONDS = 0.02
TOKENS = 32


def degrading(limit: int, knee: int, noise: float = 0.0) -> Sample:
    """A request on a runtime whose throughput saturates at ``knee`` concurrent requests,
    running at ``limit`` (the fake runtime's true_parallelism, as a formula)."""
    per_token = TOKEN_SECONDS * max(1.0, limit / knee) * (1 + noise)
    return Sample(
        limit=limit,
        inflight=limit,
        ttft_seconds=per_token,
        tokens=TOKENS,
        duration_seconds=per_token * TOKENS,
    )


def run(controller: Controller, knee: int, windows: int, noise: float = 0.0) -> list[int]:
    """The limits after each of ``windows`` windows; each request's speed off by up to
    ``noise`` (a fraction) either way."""
    rng = random.Random(13)
    limits = []
    while len(limits) < windows:
        if controller.observe(degrading(controller.limit, knee, rng.uniform(-noise, noise))):
            limits.append(controller.limit)
    return limits


@pytest.mark.parametrize("knee", [1, 2, 3, 5, 7, 8])
def test_finds_the_knee_and_stays_near_it(knee: int) -> None:
    controller = Controller(max_limit=12)
    limits = run(controller, knee, windows=40)
    assert knee in limits[: knee + 2]  # reached in about knee windows
    assert all(knee - 1 <= limit <= knee + 1 for limit in limits[knee + 2 :]), limits
    # it spends most windows at the knee, probing one above now and then
    assert limits[knee + 2 :].count(knee) > len(limits[knee + 2 :]) / 2


def test_noise_below_the_tolerance_does_not_move_it() -> None:
    controller = Controller(max_limit=12)
    limits = run(controller, knee=5, windows=60, noise=0.05)
    assert all(4 <= limit <= 6 for limit in limits[8:]), limits


def test_bounded_by_its_maximum() -> None:
    controller = Controller(max_limit=4)
    assert run(controller, knee=100, windows=12)[-1] == 4


def test_overload_halves_and_holds() -> None:
    controller = Controller(max_limit=8, limit=6)
    controller.overloaded()
    assert controller.limit == 3
    assert controller.hold == HOLD_WINDOWS
    controller.overloaded()
    controller.overloaded()
    assert controller.limit == 1


def test_ignores_what_cannot_teach() -> None:
    controller = Controller(max_limit=8, limit=3)
    other_limit = degrading(2, knee=8)
    not_full = Sample(limit=3, inflight=1, ttft_seconds=0.01, tokens=8, duration_seconds=0.1)
    no_tokens = Sample(limit=3, inflight=3, ttft_seconds=0.01, tokens=1, duration_seconds=0.01)
    for sample in (other_limit, not_full, no_tokens):
        assert not controller.observe(sample)
    assert controller.tpots == []


def test_gradient() -> None:
    assert gradient(0.02, 0.02, 0.02, 0.02) == 1
    assert gradient(0.02, 0.02, 0.04, 0.02) == 0.5  # tokens half as fast
    assert gradient(0.02, 0.02, 0.01, 0.01) == 1  # faster than the reference: capped
    # a first token 20 ms later is noise, two seconds later is not
    assert gradient(0.02, 0.005, 0.02, 0.025) >= TOLERANCE
    assert gradient(0.02, 0.005, 0.02, 2.0) < 0.15


def test_samples_without_ttft_use_the_whole_duration() -> None:
    sample = Sample(limit=1, inflight=1, ttft_seconds=None, tokens=10, duration_seconds=1.0)
    assert sample.seconds_per_token == 0.1
    with_ttft = Sample(limit=1, inflight=1, ttft_seconds=0.1, tokens=10, duration_seconds=1.0)
    assert with_ttft.seconds_per_token == pytest.approx(0.1)


def test_state_round_trips_and_a_lower_maximum_wins() -> None:
    controller = Controller(max_limit=8)
    run(controller, knee=6, windows=10)
    again = Controller.from_json(controller.to_json(), max_limit=8)
    assert again == controller
    lowered = Controller.from_json(controller.to_json(), max_limit=2)
    assert (lowered.limit, lowered.max_limit) == (2, 2)


def test_shared_in_redis(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    slots = AdaptiveSlots(client, "ep", max_limit=8)
    assert slots.limit() == 1  # nothing stored yet
    assert current_limit(client, SimpleNamespace(name="ep")) == 1

    def feed() -> None:  # four workers reporting their requests at once
        for _ in range(40):
            slots.record(degrading(slots.limit(), knee=3))

    threads = [threading.Thread(target=feed) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 2 <= slots.limit() <= 4
    assert current_limit(client, SimpleNamespace(name="ep")) == slots.limit()  # what dispatch reads
    assert AdaptiveSlots(client, "ep", max_limit=8).controller().history  # another process sees it
    slots.overloaded()
    assert slots.limit() <= 2


def window(controller: Controller, slowdown: float) -> None:
    """One window of requests at the controller's limit, ``slowdown`` times slower than alone."""
    for _ in range(controller.window_size()):
        tpot = TOKEN_SECONDS * slowdown
        sample = Sample(controller.limit, controller.limit, tpot, TOKENS, tpot * TOKENS)
        controller.observe(sample)


def test_one_mildly_slow_window_is_not_enough_two_are_one_severe_is() -> None:
    controller = Controller(max_limit=8)
    for _ in range(4):
        window(controller, 1.0)
    assert controller.limit == 5
    window(controller, 1.2)  # g = 0.83: could be the machine
    assert controller.limit == 5
    window(controller, 1.0)  # it was
    window(controller, 1.2)
    assert controller.limit == 6  # the strike was forgotten; the fast window raised it
    window(controller, 1.2)
    window(controller, 1.2)  # two in a row: shrink to round(6 * 0.83)
    assert controller.limit == 5
    controller = Controller(max_limit=8, limit=6, ref_tpot=TOKEN_SECONDS, ref_ttft=TOKEN_SECONDS)
    window(controller, 2.0)  # g = 0.5: at once
    assert controller.limit == 3


def test_a_machine_that_got_slower_is_not_held_to_its_old_record() -> None:
    controller = Controller(max_limit=8, limit=3, ref_tpot=TOKEN_SECONDS, ref_ttft=TOKEN_SECONDS)
    for _ in range(6):  # everything 40 % slower from now on, at any concurrency
        window(controller, 1.4)
    assert controller.limit == 1
    window(controller, 1.4)  # alone, and as slow: that is the new no-load speed
    window(controller, 1.4)
    assert controller.limit == 3  # climbing again


def queueing(limit: int, parallel: int, i: int) -> Sample:
    """A runtime that runs ``parallel`` requests and queues the rest (Ollama with a smaller
    OLLAMA_NUM_PARALLEL): tokens come as fast at any limit, but of each ``limit`` requests
    ``limit - parallel`` wait a whole request before their first token."""
    decode = TOKEN_SECONDS * TOKENS
    ttft = TOKEN_SECONDS + (decode if i % limit >= parallel else 0.0)
    return Sample(limit, limit, ttft, TOKENS, ttft + decode)


@pytest.mark.parametrize("parallel", [2, 4])
def test_a_runtime_that_queues_is_found_by_its_first_tokens(parallel: int) -> None:
    controller = Controller(max_limit=10)
    limits: list[int] = []
    i = 0
    while len(limits) < 40:
        i += 1
        if controller.observe(queueing(controller.limit, parallel, i)):
            limits.append(controller.limit)
    settled = limits[parallel + 4 :]
    assert all(parallel - 1 <= limit <= parallel + 1 for limit in settled), limits
