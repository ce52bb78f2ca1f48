"""The dispatcher's choices against a real Redis: least loaded, session affinity, the loaded
model, cooldown, and the release order. What it publishes is recorded instead of sent to a
broker (the end-to-end tests in test_fleet.py run it with real workers)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import pytest
import redis
from celery import Celery

from genq.fleet import keys
from genq.fleet.backlog import Backlog, Waiting
from genq.fleet.config import FleetConfigError
from genq.fleet.dispatcher import Dispatcher
from genq.fleet.slots import Candidate, Claim, Reservation, SlotTable
from genq.settings import Settings
from schemas import BrokerUnavailable
from tests.support import eventually


class Published:
    def __init__(self) -> None:
        self.jobs: list[tuple[str, str]] = []  # (job id, endpoint)
        self.refuse = False  # the broker is away: publishing raises

    def __call__(self, app: Celery, settings: Settings, **message: Any) -> None:
        if self.refuse:
            raise BrokerUnavailable("the broker is away")
        self.jobs.append((message["job_id"], message["slot"]["endpoint"]))

    def endpoint_of(self, job_id: str) -> str:
        return next(endpoint for job, endpoint in self.jobs if job == job_id)


@pytest.fixture
def dispatch(redis_url: str, tmp_path: Path) -> Iterator[tuple[Dispatcher, Published]]:
    endpoints = [
        {"name": "x", "kind": "ollama", "url": "http://x:1", "models": ["m"], "slots": 2},
        {"name": "y", "kind": "ollama", "url": "http://y:1", "models": ["m"], "slots": 2},
    ]
    settings = Settings(redis_url=redis_url, data_dir=tmp_path, runtimes=json.dumps(endpoints))
    client = redis.Redis.from_url(redis_url)
    published = Published()
    yield Dispatcher(Celery(set_as_current=False), settings, client, published), published
    client.close()


def job(priority: int = 5, session: str | None = None, tenant: str = "t") -> Waiting:
    return Waiting(
        job_id=str(uuid.uuid4()),
        model="m",
        tenant=tenant,
        priority=priority,
        kind="chat",
        lane="interactive",
        session=session,
    )


def test_the_least_loaded_endpoint_takes_the_next_job(
    dispatch: tuple[Dispatcher, Published],
) -> None:
    dispatcher, published = dispatch
    for _ in range(4):
        dispatcher.enqueue(job())
    assert sorted(endpoint for _, endpoint in published.jobs) == ["x", "x", "y", "y"]
    extra = job()
    dispatcher.enqueue(extra)  # every slot is held: it waits in the backlog
    assert len(published.jobs) == 4 and dispatcher.backlog.size("m") == 1


def test_a_session_sticks_to_its_endpoint_while_it_has_room(
    dispatch: tuple[Dispatcher, Published],
) -> None:
    dispatcher, published = dispatch
    first = job(session="chat-1")
    dispatcher.enqueue(first)
    home = published.endpoint_of(first.job_id)
    follow_up = job(session="chat-1")
    dispatcher.enqueue(follow_up)  # the other endpoint is idle, but this one has its cache
    assert published.endpoint_of(follow_up.job_id) == home
    third = job(session="chat-1")
    dispatcher.enqueue(third)  # home is full now: the other one
    assert published.endpoint_of(third.job_id) != home


def test_an_endpoint_with_the_model_loaded_is_preferred(
    dispatch: tuple[Dispatcher, Published],
) -> None:
    dispatcher, published = dispatch
    dispatcher.client.set(keys.loaded("y"), json.dumps(["m:latest"]))
    first = job()
    dispatcher.enqueue(first)
    assert published.endpoint_of(first.job_id) == "y"


def test_an_endpoint_in_cooldown_gets_no_jobs(dispatch: tuple[Dispatcher, Published]) -> None:
    dispatcher, published = dispatch
    assert dispatcher.health.failed("x", "connection refused", immediate=True)
    for _ in range(3):
        dispatcher.enqueue(job())
    assert [endpoint for _, endpoint in published.jobs] == ["y", "y"]
    dispatcher.health.recovered("x")
    dispatcher.pump()
    assert [endpoint for _, endpoint in published.jobs] == ["y", "y", "x"]


def test_released_in_priority_then_submission_order_as_slots_free(
    dispatch: tuple[Dispatcher, Published],
) -> None:
    dispatcher, published = dispatch
    blockers = [job() for _ in range(4)]
    for blocker in blockers:
        dispatcher.enqueue(blocker)
    waiting = [job(priority=p) for p in (2, 9, 5, 9, 2, 5)]
    for item in waiting:
        dispatcher.enqueue(item)
    assert len(published.jobs) == 4
    for i, blocker in enumerate(blockers):  # each finished job's slot is given back: one more goes
        endpoint = published.endpoint_of(blocker.job_id)
        tokens = dispatcher.client.hgetall(keys.SLOT_JOBS)
        token = next(t.decode() for t, j in tokens.items() if j.decode() == blocker.job_id)
        # A worker says which model the slot served (its next job is read with the give-back).
        dispatcher.give_back(endpoint, token, model="m" if i % 2 else None)
    released = [job_id for job_id, _ in published.jobs[4:]]
    by_rank = sorted(range(6), key=lambda i: (-waiting[i].priority, i))
    assert released == [waiting[i].job_id for i in by_rank[:4]]


def test_a_released_job_is_charged_and_one_the_broker_refused_waits_uncharged(
    dispatch: tuple[Dispatcher, Published],
) -> None:
    """Taking a job with a slot charges its tenant its estimate; if its message cannot be
    published, it is back in its place, the slot free and the charge undone."""
    dispatcher, published = dispatch
    fair = dispatcher.fair
    first = replace(job(tenant="a"), estimate=100.0)
    dispatcher.enqueue(first)
    assert published.endpoint_of(first.job_id)
    assert fair.counters("m") == {"a": 100.0}
    published.refuse = True
    refused = replace(job(tenant="a"), estimate=40.0)
    dispatcher.enqueue(refused)  # the pump logs the refusal and stops
    assert [h.job_id for h in dispatcher.backlog.heads("m")] == [refused.job_id]
    assert fair.counters("m") == {"a": 100.0}
    assert sum(dispatcher.slots.in_flight(["x", "y"]).values()) == 1  # the first job's only
    published.refuse = False
    assert dispatcher.pump() == 1
    assert published.endpoint_of(refused.job_id) and fair.counters("m") == {"a": 140.0}


def test_a_slot_goes_back_and_a_job_in_even_when_the_fleet_cannot_be_read(
    dispatch: tuple[Dispatcher, Published], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The give-back and the enqueue read the model's next job in their own round trip; if
    what serves the model cannot be known then (the fleet's file broken, say), the slot is
    still given back and the job still goes into its backlog (the pump says why it waits)."""
    dispatcher, published = dispatch
    first = job()
    dispatcher.enqueue(first)
    (token,) = [t.decode() for t in dispatcher.client.hkeys(keys.SLOT_JOBS)]

    def unreadable(model: str, waiting: Waiting | None = None) -> list[Candidate]:
        raise FleetConfigError("the fleet's file is broken")

    monkeypatch.setattr(dispatcher, "_candidates", unreadable)
    dispatcher.give_back(published.endpoint_of(first.job_id), token, model="m")
    assert dispatcher.slots.in_flight(["x", "y"]) == {"x": 0, "y": 0}
    second = job()
    dispatcher.enqueue(second)
    assert dispatcher.backlog.waiting(second.job_id) is not None
    assert [h.job_id for h in dispatcher.backlog.heads("m")] == [second.job_id]


def test_a_withdrawn_job_leaves_its_backlog_or_the_delayed_set(
    dispatch: tuple[Dispatcher, Published],
) -> None:
    """A queued job cancelled or expired is withdrawn whether it waits for a slot or out a
    retry's countdown; withdrawing one that is in neither changes nothing."""
    dispatcher, published = dispatch
    backlog = dispatcher.backlog
    for blocker in (job() for _ in range(4)):  # every slot held: the next ones wait
        dispatcher.enqueue(blocker)
    waiting, delayed, other = job(), job(), job()
    dispatcher.enqueue(waiting)
    dispatcher.enqueue(delayed, countdown=60)  # a retry's backoff
    dispatcher.enqueue(other)
    assert backlog.withdraw("m", "t", waiting.job_id)
    assert backlog.withdraw("m", "t", delayed.job_id)
    assert not backlog.withdraw("m", "t", delayed.job_id)
    assert backlog.waiting(waiting.job_id) is None and backlog.waiting(delayed.job_id) is None
    assert dispatcher.client.zscore(keys.DELAYED, delayed.job_id) is None
    assert [h.job_id for h in backlog.heads("m")] == [other.job_id]
    assert len(published.jobs) == 4


def test_a_late_forget_keeps_a_job_that_waits_again(
    dispatch: tuple[Dispatcher, Published],
) -> None:
    """A finished job's backlog records go with its worker's next fleet write, so a forget can
    come after the job was requeued (from the dead letters): then it keeps its records."""
    dispatcher, _ = dispatch
    backlog = dispatcher.backlog
    done, again, delayed = job(), job(), job()
    for waiting in (done, again, delayed):
        backlog.enqueue(waiting)
        backlog.take("m", "t", waiting.job_id)  # released
    backlog.enqueue(again)  # requeued: waits again, at its place
    backlog.enqueue(delayed, countdown=60)  # a retry waiting out its backoff
    backlog.forget([done.job_id, again.job_id, delayed.job_id])
    assert backlog.waiting(done.job_id) is None
    assert backlog.waiting(again.job_id) is not None
    assert backlog.waiting(delayed.job_id) is not None
    assert [h.job_id for h in backlog.heads("m")] == [again.job_id]


def test_a_re_send_of_a_waiting_job_keeps_what_it_entered_with(
    dispatch: tuple[Dispatcher, Published],
) -> None:
    """The sweep re-sends a job that has waited long (its message may have been lost): if it is
    still in its backlog, it keeps its place, its cost estimate, its session and the time it
    entered (from which its wait for a healthy endpoint counts)."""
    backlog = dispatch[0].backlog
    first = replace(job(session="s1"), estimate=120.0)
    backlog.enqueue(first)
    entered = backlog.waiting(first.job_id)
    assert entered is not None and entered.estimate == 120.0
    backlog.enqueue(replace(first, estimate=0.0, session=None))  # what a bare re-send knows
    assert backlog.waiting(first.job_id) == entered
    assert [h.job_id for h in backlog.heads("m")] == [first.job_id]


def test_a_lapsed_slot_forgets_the_job_it_was_held_for(redis_url: str) -> None:
    """A slot whose holder died lapses; the next claim drops it and its record of the job it
    was held for (``genq runtimes`` would show it otherwise, and the record would stay)."""
    client = redis.Redis.from_url(redis_url)
    table = SlotTable(client, lease_seconds=0.05)  # reservations live a lease here
    backlog = Backlog(client)
    candidates = [Candidate("e", 1)]

    def claim(waiting: Waiting) -> Reservation | Literal[False] | None:
        return table.claim(candidates, Claim(waiting.job_id, "t", "m", "genq:fair:m", "c:t", 0, 60))

    first, second = job(), job()
    backlog.enqueue(first)
    backlog.enqueue(second)
    held = claim(first)
    assert held
    assert client.hget(keys.SLOT_JOBS, held.token) == first.job_id.encode()
    assert claim(second) is None  # the one slot is held
    assert claim(first) is False  # no longer waiting: taken
    assert eventually(lambda: claim(second), timeout=5, interval=0.02)
    assert client.hget(keys.SLOT_JOBS, held.token) is None
    client.close()


def test_dispatchers_racing_release_each_job_once_within_the_slots(
    redis_url: str, tmp_path: Path
) -> None:
    """Four dispatchers (as four worker processes would, each its own connection) release one
    backlog while giving slots back as soon as each job is out: every job goes exactly once,
    and no endpoint ever holds more leases than its slots."""
    endpoints = [
        {"name": n, "kind": "openai", "url": f"http://{n}:1", "models": ["m"], "slots": 2}
        for n in ("x", "y")
    ]
    settings = Settings(redis_url=redis_url, data_dir=tmp_path, runtimes=json.dumps(endpoints))
    watcher = redis.Redis.from_url(redis_url)
    released: list[str] = []
    most: dict[str, int] = {"x": 0, "y": 0}
    to_give_back: list[tuple[str, str]] = []
    lock = threading.Lock()

    def publish(app: Celery, settings: Settings, **message: Any) -> None:
        endpoint = message["slot"]["endpoint"]
        held = int(watcher.zcard(keys.slots(endpoint)))
        with lock:
            released.append(message["job_id"])
            most[endpoint] = max(most[endpoint], held)
            to_give_back.append((endpoint, message["slot"]["token"]))

    clients = [redis.Redis.from_url(redis_url) for _ in range(4)]
    dispatchers = [Dispatcher(Celery(set_as_current=False), settings, c, publish) for c in clients]
    jobs = [job(priority=i % 10, tenant=f"t{i % 3}") for i in range(60)]
    dispatchers[0].enqueue_many(jobs)

    def run(dispatcher: Dispatcher) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if len(released) == len(jobs) and not to_give_back:
                    return
                mine = to_give_back.pop() if to_give_back else None
            if mine is not None:
                dispatcher.give_back(*mine, model="m")
            else:
                dispatcher.pump()

    threads = [threading.Thread(target=run, args=(d,)) for d in dispatchers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(released) == sorted(j.job_id for j in jobs)  # each once, none lost
    assert max(most.values()) <= 2 and min(most.values()) >= 1
    assert dispatchers[0].slots.in_flight(["x", "y"]) == {"x": 0, "y": 0}
    for client in [*clients, watcher]:
        client.close()
