"""Fair share (VTC): the pure decisions, a simulated saturated pool, and the Redis counters."""

from __future__ import annotations

import heapq
import itertools
import threading
from dataclasses import dataclass

import pytest
import redis

from genq.fleet.fairness import (
    FairShare,
    choose,
    cost,
    estimate_cost,
    lifted,
    usage_cost,
)
from genq.settings import Settings
from schemas import JobRequest, Usage


@dataclass(frozen=True)
class Head:
    """What the dispatcher's heads carry that the choice reads."""

    tenant: str
    priority: int
    seq: int
    estimate: float


def head(tenant: str, priority: int = 5, seq: int = 0, estimate: float = 10) -> Head:
    return Head(tenant=tenant, priority=priority, seq=seq, estimate=estimate)


def jain(values: list[float]) -> float:
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


@pytest.mark.parametrize(
    ("heads", "counters", "winner"),
    [
        ([head("a", seq=1), head("b", seq=2)], {"a": 5, "b": 3}, 1),  # lowest counter
        ([head("a", seq=1), head("b", seq=2)], {"a": 3, "b": 3}, 0),  # tie: submitted first
        ([head("a", seq=1), head("b", seq=2)], {}, 0),  # unknown tenants count 0
        ([head("a", 5, 1), head("b", 9, 2)], {"a": 0, "b": 1e9}, 1),  # priority wins
        ([head("a", 3, 1), head("b", 3, 2), head("c", 1, 0)], {"a": 2, "b": 1}, 1),
    ],
)
def test_choose(heads: list[Head], counters: dict[str, float], winner: int) -> None:
    assert choose(heads, counters) == winner


def test_choose_refuses_nothing() -> None:
    with pytest.raises(ValueError, match="no heads"):
        choose([], {})


@pytest.mark.parametrize(
    ("counters", "before", "now", "changed"),
    [
        # an arrival is lifted to the minimum of those that stayed backlogged
        ({"a": 100, "b": 40, "c": 0}, {"a", "b"}, {"a", "b", "c"}, {"c": 40}),
        # ... never lowered
        ({"a": 100, "c": 300}, {"a"}, {"a", "c"}, {}),
        # nobody stayed: lifted to the minimum of those that were backlogged (the last to leave)
        ({"a": 70, "c": 5}, {"a"}, {"c"}, {"c": 70}),
        # a fresh pool: nothing to lift to
        ({}, set(), {"a", "b"}, {}),
        # tenants that stayed are never touched, leavers neither
        ({"a": 1, "b": 9}, {"a", "b"}, {"a"}, {}),
    ],
)
def test_lifted(
    counters: dict[str, float], before: set[str], now: set[str], changed: dict[str, float]
) -> None:
    assert lifted(counters, before=before, now=now) == changed


def test_estimate_counts_prompt_and_max_tokens() -> None:
    settings = Settings(fair_prompt_token_cost=1, fair_output_token_cost=2, default_max_tokens=100)

    def stored(**fields: object) -> dict[str, object]:  # a request as the store keeps it
        return JobRequest.model_validate(fields).public_dump()

    chat = stored(messages=[{"role": "user", "content": "x" * 40}], max_tokens=16)
    assert estimate_cost(chat, settings) == 10 + 2 * 16
    no_max = stored(kind="completion", prompt="abcd")
    assert estimate_cost(no_max, settings) == 1 + 2 * 100
    embedding = stored(kind="embedding", input=["abcdefgh", "a"])
    assert estimate_cost(embedding, settings) == 2 + 1
    assert usage_cost(Usage(prompt_tokens=3, completion_tokens=5), settings) == cost(3, 5, settings)
    assert usage_cost(None, settings) == 0


def simulate(
    demands: dict[str, int], weights: dict[str, float], slots: int, jobs: int
) -> dict[str, float]:
    """A saturated pool of ``slots``, every tenant always backlogged, each job generating
    ``demands[tenant]`` tokens at one token per time unit: tokens served per tenant by the time
    ``jobs`` jobs have finished. The pure functions only, as a dispatcher would use them."""
    counters: dict[str, float] = dict.fromkeys(demands, 0.0)
    seq = itertools.count()
    served = dict.fromkeys(demands, 0.0)
    running: list[tuple[float, int, str]] = []
    now = 0.0

    def start() -> None:
        heads = [head(t, seq=next(seq), estimate=demands[t]) for t in demands]
        chosen = heads[choose(heads, counters)]
        counters[chosen.tenant] += chosen.estimate / weights.get(chosen.tenant, 1)
        heapq.heappush(running, (now + demands[chosen.tenant], next(seq), chosen.tenant))

    for _ in range(slots):
        start()
    for _ in range(jobs):
        now, _, tenant = heapq.heappop(running)
        served[tenant] += demands[tenant]
        start()
    return served


def test_equal_weights_share_tokens_not_jobs() -> None:
    served = simulate({"a": 16, "b": 64, "c": 256, "d": 64}, {}, slots=4, jobs=2000)
    assert jain(list(served.values())) >= 0.99


def test_weights_set_the_shares() -> None:
    weights = {"a": 1, "b": 2, "c": 3, "d": 4}
    served = simulate({"a": 64, "b": 64, "c": 64, "d": 64}, weights, slots=4, jobs=2000)
    total = sum(served.values())
    for tenant, weight in weights.items():
        assert served[tenant] / total == pytest.approx(weight / 10, rel=0.05)


def test_tenant_weights_setting() -> None:
    assert Settings(tenant_weights="acme=2, beta=0.5").tenant_weights == {"acme": 2, "beta": 0.5}
    with pytest.raises(ValueError, match="tenant=number"):
        Settings(tenant_weights="acme")
    with pytest.raises(ValueError, match="must be > 0"):
        Settings(tenant_weights="acme=0")


# -- the counters in Redis ---------------------------------------------------------------------


@pytest.fixture
def fair(redis_url: str) -> FairShare:
    settings = Settings(redis_url=redis_url, tenant_weights={"heavy": 2})
    return FairShare(redis.Redis.from_url(redis_url), settings)


def test_pick_lifts_a_late_arrival_and_charge_is_weighted(fair: FairShare) -> None:
    for i in range(10):  # "a" alone: it is served and charged
        assert fair.pick("m", [head("a", seq=i)]) == 0
        fair.charge("m", "a", 10)
    assert fair.counters("m") == {"a": 100}
    # "b" arrives from idle: lifted to a's 100, not given a head start of 100 tokens' worth
    assert fair.pick("m", [head("a", seq=10), head("b", seq=11)]) == 0  # tie: a was first
    assert fair.counters("m")["b"] == 100
    fair.charge("m", "a", 10)
    assert fair.pick("m", [head("a", seq=11), head("b", seq=11)]) == 1
    fair.charge("m", "heavy", 10)
    assert fair.counters("m")["heavy"] == 5  # weight 2: half the charge


def test_a_lone_arrival_starts_where_the_last_tenant_left(fair: FairShare) -> None:
    fair.pick("m", [head("a")])
    fair.charge("m", "a", 50)
    fair.pick("m", [head("a")])  # a is still the one waiting
    fair.pick("m", [head("c")])  # a has left, c arrives alone
    assert fair.counters("m")["c"] == 50


def test_settle_corrects_the_estimate(fair: FairShare) -> None:
    fair.pick("m", [head("a")])
    fair.charge("m", "a", 100)
    # 2 prompt tokens (cost 1) and 9 generated (cost 2) instead of the 100 charged
    delta = fair.settle("m", "a", 100, Usage(prompt_tokens=2, completion_tokens=9))
    assert delta == -80
    assert fair.counters("m") == {"a": 20}
    assert fair.settle("m", "heavy", 10, None) == -5


def test_concurrent_picks_and_charges_lose_nothing(fair: FairShare) -> None:
    def dispatch(tenant: str) -> None:
        for i in range(50):
            fair.pick("m", [head("a", seq=i), head("b", seq=i)])
            fair.charge("m", tenant, 1)

    threads = [threading.Thread(target=dispatch, args=(t,)) for t in ("a", "a", "b", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fair.counters("m") == {"a": 100, "b": 100}
