"""The dispatcher: jobs wait in genq's backlog (Redis) and go to the broker one at a time, each
with a slot it already holds on an endpoint that serves its model.

Where dispatch order is made: here, not in the broker. A broker list is FIFO per priority and
knows nothing of models or endpoints, so the backlog is kept per model (``genq.fleet.backlog``)
and a job is published only when a slot is free for it (``genq.fleet.slots``). What reaches
the broker is therefore what can start now; the broker's own order no longer matters, which
keeps the order the same on Redis and RabbitMQ. Nothing is re-published for lack of a slot.

``pump`` releases what it can. It runs when a job is enqueued, when a worker gives a slot back,
and on every worker process's tick (``tick``), which also moves due retries in, probes endpoints
in cooldown, discovers models, and releases jobs that waited too long for a healthy endpoint so
that the retry rules apply to them.

Order: per model, the next job is chosen among each tenant's first waiting job: priority
descending, then, among the tenants at that priority, fair share (``genq.fleet.fairness``: the
tenant served least by weight; submission order between equals). Across models sharing an
endpoint the same rule applies between their next jobs.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

import httpx
import redis
from celery import Celery

from genq import constants as c
from genq.fleet import keys
from genq.fleet.backlog import Backlog, Head, Waiting, text
from genq.fleet.config import Endpoint, Fleet, load_fleet, model_matches
from genq.fleet.fairness import FairShare
from genq.fleet.health import HealthBook
from genq.fleet.slots import Candidate, Claim, SlotTable, slots_for
from genq.fleet.status import DISCOVERY_TTL_SECONDS, discover, read_discovered
from genq.runtime_health import probe_runtime
from genq.settings import Settings
from schemas import BrokerUnavailable, JobKind

__all__ = [
    "FORCED",
    "UNKNOWN_MODEL",
    "Dispatcher",
    "Head",
    "Publish",
    "Waiting",
    "dispatcher_for",
]

log = logging.getLogger(__name__)

# genq.dispatch.publish_job: (app, settings, *, job_id, kind, tenant, lane, priority, slot)
Publish = Callable[..., None]

AFFINITY_TTL_SECONDS = 600  # a session/prefix key sticks to its endpoint this long
RELEASE_ROUNDS = 10_000  # one pump's bound on releases (a backlog drains over several)
RACE_RETRIES = 5  # times a dispatcher picks again after another took its chosen job
FORCED = ""  # the endpoint of a job released without a slot: no healthy endpoint serves it
UNKNOWN_MODEL = "unknown_model"  # its reason when no endpoint serves the model at all


class Dispatcher:
    """Releases backlog into the broker as slots free up. One per process (``dispatcher_for``);
    builds no connection of its own beyond the Redis client it is given."""

    def __init__(
        self, app: Celery, settings: Settings, client: redis.Redis, publish: Publish
    ) -> None:
        self.app = app
        self.publish = publish
        self.settings = settings
        self.client = client
        self.backlog = Backlog(client)
        self.slots = SlotTable(
            client, settings.fleet_slot_lease_seconds, settings.redispatch_after_seconds
        )
        self.health = HealthBook(
            client,
            failures=settings.fleet_breaker_failures,
            cooldown_seconds=settings.fleet_breaker_cooldown_seconds,
        )
        self.fair = FairShare(client, settings)
        self._discovered: tuple[float, dict[str, list[str]]] = (-1.0, {})
        self._http: dict[str, httpx.Client] = {}
        self._lock = threading.Lock()

    @property
    def fleet(self) -> Fleet:
        return load_fleet(self.settings)

    # -- what serves what ------------------------------------------------------------------
    def discovered(self) -> dict[str, list[str]]:
        """The model lists endpoints without declared models gave (cached a second)."""
        at, cached = self._discovered
        if time.monotonic() - at < 1.0:
            return cached
        found = read_discovered(self.client, self.fleet)
        self._discovered = (time.monotonic(), found)
        return found

    def endpoints_for(self, model: str) -> list[Endpoint]:
        return self.fleet.serving(model, self.discovered())

    def model_names(self) -> list[str]:
        return self.fleet.model_names(self.discovered())

    def _candidates(self, model: str, waiting: Waiting | None = None) -> list[Candidate]:
        """The endpoints serving ``model`` with their slots now; with ``waiting``, also the
        preference each has for that job (a warm session, the model loaded)."""
        endpoints = self.endpoints_for(model)
        if not endpoints:
            return []
        if waiting is None:
            return [Candidate(e.name, slots_for(self.client, e), e.weight) for e in endpoints]
        # What the runtimes have loaded (only Ollama says) and the session's last endpoint.
        asked = [e.name for e in endpoints if e.kind == "ollama"]
        answers: list[object] = []
        if asked or waiting.session:
            pipe = self.client.pipeline(transaction=False)
            for name in asked:
                pipe.get(keys.loaded(name))
            if waiting.session:
                pipe.get(keys.affinity(waiting.session))
            answers = pipe.execute()
        loaded = dict(zip(asked, answers, strict=False))
        sticky = text(answers[-1]) if waiting.session and answers[-1] else None
        out = []
        for endpoint in endpoints:
            preference = 0
            if endpoint.name == sticky:
                preference = 2
            elif (raw := loaded.get(endpoint.name)) is not None and model_matches(
                model, json.loads(text(raw))
            ):
                preference = 1
            slots = slots_for(self.client, endpoint)
            out.append(Candidate(endpoint.name, slots, endpoint.weight, preference))
        return out

    # -- into the backlog ------------------------------------------------------------------
    def enqueue(self, waiting: Waiting, *, countdown: float = 0.0) -> None:
        """Put a job in the backlog and release what can start. ``BrokerUnavailable`` if Redis
        cannot take it (the caller treats it as a failed publish)."""
        try:
            if not waiting.model:  # a re-send that did not say (the sweep): as it was
                before = self.backlog.waiting(waiting.job_id)
                waiting = before or replace(waiting, model=self.settings.default_model)
            # In, and (unless it waits out a countdown) what choosing the model's next job
            # reads, in one round trip.
            pipe = self.client.pipeline(transaction=False)
            self.backlog.enqueue(waiting, countdown=countdown, pipe=pipe)
            next_read = not countdown and self._read_next_or_skip(waiting.model, pipe)
            results = pipe.execute()
        except redis.RedisError as exc:
            raise BrokerUnavailable(
                f"could not put job {waiting.job_id} in the backlog "
                f"({exc.__class__.__name__}); try again"
            ) from exc
        if not countdown:
            # One: only this job is new; whatever else could go went when its slot freed (or
            # goes at the next tick).
            read = (waiting.model, results[1:]) if next_read else None
            self.pump([waiting.model], limit=1, read=read)

    def enqueue_many(self, waitings: Sequence[Waiting]) -> None:
        """``enqueue`` for a batch of new jobs: into their backlogs in one round trip, then
        release what can start. ``BrokerUnavailable`` if Redis failed (which of them went in is
        unknown: enqueueing one again is harmless, it keeps its place)."""
        default = self.settings.default_model
        waitings = [w if w.model else replace(w, model=default) for w in waitings]
        try:
            pipe = self.client.pipeline(transaction=False)
            for waiting in waitings:
                self.backlog.enqueue(waiting, pipe=pipe)
            pipe.execute()
        except redis.RedisError as exc:
            raise BrokerUnavailable(
                f"could not put {len(waitings)} jobs in the backlog "
                f"({exc.__class__.__name__}); try again"
            ) from exc
        self.pump(sorted({w.model for w in waitings}), limit=len(waitings))

    # -- out of it ---------------------------------------------------------------------------
    def pump(
        self,
        models: Iterable[str] | None = None,
        limit: int = RELEASE_ROUNDS,
        read: tuple[str, list[Any]] | None = None,
    ) -> int:
        """Release up to ``limit`` jobs that have a free slot now; how many went. Never raises
        for Redis or broker trouble (what could not go stays in the backlog for the next pump).
        ``read``: a model and what ``_read_next`` read for it just now (``give_back``)."""
        released = 0
        try:
            order = list(models) if models is not None else self.backlog.models()
            while released < limit:
                progressed = False
                for model in self._by_next_job(order):
                    fresh = None
                    if read is not None and read[0] == model:
                        fresh, read = read[1], None
                    if self.release_one(model, fresh):
                        released += 1
                        progressed = True
                        read = None  # what it read is stale now
                        break  # the next job may belong to another model: rank again
                if not progressed:
                    break
                if models is not None and released < limit:
                    order = self.backlog.models()  # slots freed for one model may serve others
        except (redis.RedisError, BrokerUnavailable) as exc:
            log.warning("fleet dispatch paused: %s", exc)
        except Exception:  # e.g. the picker gave up under contention: the tick pumps again
            log.warning("fleet dispatch paused", exc_info=True)
        return released

    def _by_next_job(self, models: list[str]) -> list[str]:
        """``models`` ordered by their best waiting job (priority, then submission)."""
        if len(models) < 2:
            return models
        ranked = []
        for model in models:
            heads = self.backlog.heads(model)
            if heads:
                best = min(heads, key=lambda h: (-h.priority, h.seq))
                ranked.append(((-best.priority, best.seq), model))
        return [model for _, model in sorted(ranked)]

    def release_one(self, model: str, read: list[Any] | None = None) -> bool:
        """Release ``model``'s next job if an endpoint serving it has a free slot. ``read``:
        what ``_read_next`` read for it just now, if the caller did."""
        for _ in range(RACE_RETRIES):
            outcome = self._release_next(model, read)
            if outcome is not None:
                return outcome
            read = None
        return False

    def _read_next(self, model: str, pipe: redis.client.Pipeline) -> bool:
        """Queue on ``pipe`` what choosing ``model``'s next job reads: is there room, what
        waits and what fair share needs (three results). False (nothing queued) if no endpoint
        serves ``model``."""
        candidates = self._candidates(model)
        if not candidates:
            return False
        self.slots.has_room(candidates, pipe)
        self.backlog.heads(model, pipe)
        self.fair.read(model, pipe)
        return True

    def _read_next_or_skip(self, model: str, pipe: redis.client.Pipeline) -> bool:
        """``_read_next`` for a caller whose own writes must go whatever happens: if what
        serves ``model`` cannot be known now (Redis, the fleet's file), nothing is queued and
        the pump that follows reads again (and says why it cannot release)."""
        try:
            return self._read_next(model, pipe)
        except Exception:
            return False

    def _release_next(self, model: str, read: list[Any] | None = None) -> bool | None:
        """True: released; False: nothing to release or no free slot; None: another
        dispatcher took the chosen job first (try again)."""
        if read is None:
            # One round trip (under a backlog the endpoints are usually full, and then no
            # claim fails).
            pipe = self.client.pipeline(transaction=False)
            if not self._read_next(model, pipe):
                return False
            read = pipe.execute()
        room, flat, *seen = read
        heads = self.backlog.parse_heads(model, flat) if room else []
        if not heads:
            return False
        head = heads[self.fair.pick(model, heads, seen)]
        # The job out of its backlog with a slot, its tenant charged: one script, one trip.
        key, field, amount, ttl = self.fair.charge_of(model, head.tenant, head.estimate)
        claim = Claim(head.job_id, head.tenant, model, key, field, amount, ttl)
        reservation = self.slots.claim(self._candidates(model, head.waiting), claim)
        if reservation is None:
            return False
        if reservation is False:
            return None  # another dispatcher took it: try again with the next
        slot = {
            "endpoint": reservation.endpoint,
            "token": reservation.token,
            "in_flight": reservation.in_flight,
            "slots": reservation.slots,
        }
        try:
            self._publish(head.waiting, slot)
        except BrokerUnavailable:
            self.slots.release(reservation.endpoint, reservation.token)
            self.backlog.put_back(head.waiting)
            self.fair.charge(model, head.tenant, -head.estimate)  # it did not go
            raise
        if head.waiting.session:
            self.client.set(
                keys.affinity(head.waiting.session), reservation.endpoint, ex=AFFINITY_TTL_SECONDS
            )
        return True

    def _publish(self, waiting: Waiting, slot: dict[str, object]) -> None:
        self.publish(
            self.app,
            self.settings,
            job_id=waiting.job_id,
            kind=JobKind(waiting.kind),
            tenant=waiting.tenant,
            lane=waiting.lane,
            priority=waiting.priority,
            slot=slot,
        )

    def give_back(
        self,
        endpoint: str,
        token: str,
        writes: Callable[[redis.client.Pipeline], None] | None = None,
        model: str | None = None,
    ) -> list[object]:
        """A worker is done with a slot: free it, with ``writes`` (what the attempt tells the
        fleet) queued in the same round trip, then release the job that goes next into it
        (one: any other free slot was filled when it freed, or is by the tick). ``model``: the
        one the slot served, whose next job is read in that round trip too (most often it is
        the one that goes). Returns the results of ``writes``."""
        pipe = self.client.pipeline(transaction=False)
        self.slots.release(endpoint, token, pipe)
        first = len(pipe)  # the results of ``writes`` start here
        if writes is not None:
            writes(pipe)
        pipe.smembers(keys.WAITING)
        last = len(pipe)
        next_read = model is not None and self._read_next_or_skip(model, pipe)
        results = pipe.execute()
        waiting = results[last - 1]
        read = (model, results[last:]) if model is not None and next_read else None
        self.pump(sorted(text(m) for m in waiting), limit=1, read=read)
        return results[first : last - 1]

    # -- the tick ----------------------------------------------------------------------------
    def tick(self) -> None:
        """Periodic care (every worker process runs it): due retries join their backlogs,
        endpoints are probed and discovered, jobs without a healthy endpoint past their wait
        are released to fail by the retry rules, and the backlog is pumped. Never raises."""
        try:
            self.backlog.promote_due()
            self._probe_endpoints()
            self._release_stranded()
        except (redis.RedisError, BrokerUnavailable) as exc:
            log.warning("fleet tick incomplete: %s", exc)
        self.pump()

    def _http_for(self, endpoint: Endpoint) -> httpx.Client:
        with self._lock:
            client = self._http.get(endpoint.name)
            if client is None:
                key = endpoint.api_key()
                client = httpx.Client(
                    base_url=endpoint.url or "",
                    headers={"Authorization": f"Bearer {key}"} if key else {},
                    timeout=c.RUNTIME_HEALTH_TIMEOUT_SECONDS,
                )
                self._http[endpoint.name] = client
            return client

    def _claim(self, what: str, seconds: float) -> bool:
        """One process in the fleet does ``what`` per ``seconds``."""
        return bool(self.client.set(what, os.getpid(), nx=True, px=max(1, int(seconds * 1000))))

    def _probe_endpoints(self) -> None:
        fleet = self.fleet
        for name in self.health.probe_due(e.name for e in fleet.endpoints):
            endpoint = fleet.by_name(name)
            if endpoint is None or not self._claim(keys.probe_lock(name), 1.0):
                continue
            result = probe_runtime(endpoint.protocol, self._http_for(endpoint))
            if result.ok:
                self.health.recovered(name)
                log.warning("runtime endpoint %s answers again: out of cooldown", name)
            else:
                self.health.still_down(name, result.detail)
        for endpoint in fleet.endpoints:
            if endpoint.discovers and self._claim(
                f"{keys.discovered(endpoint.name)}:lock", DISCOVERY_TTL_SECONDS / 2
            ):
                self._discover(endpoint)
            if endpoint.kind == "ollama" and self._claim(f"{keys.loaded(endpoint.name)}:lock", 5.0):
                self._loaded(endpoint)

    def _discover(self, endpoint: Endpoint) -> None:
        if discover(self.client, endpoint, self._http_for(endpoint)) is not None:
            self._discovered = (-1.0, {})

    def _loaded(self, endpoint: Endpoint) -> None:
        """Ollama's ``/api/ps``: the models it has in memory (preferred while they fit)."""
        try:
            response = self._http_for(endpoint).get("/api/ps")
            models = response.json().get("models") or [] if response.status_code == 200 else []
            names = [str(m.get("name") or m.get("model")) for m in models if isinstance(m, dict)]
        except (httpx.HTTPError, ValueError, AttributeError):
            return
        self.client.set(keys.loaded(endpoint.name), json.dumps(names), ex=15)

    def _release_stranded(self) -> None:
        """Jobs whose model has no healthy endpoint wait (spending no retry) up to their deadline
        or ``runtime_wait_seconds``; then they are released without a slot and the worker
        counts a failed attempt (``runtime_unavailable``): the retry/dead-letter rules apply.
        A model no endpoint serves at all (every model list known) fails at once
        (``model_not_found``): a producer that skipped the gateway's check submitted it."""
        now = time.time()
        fleet = self.fleet
        discovered = self.discovered()
        listed = all(not e.discovers or e.name in discovered for e in fleet.endpoints)
        for model in self.backlog.models():
            endpoints = self.endpoints_for(model)
            unknown = not endpoints and listed
            states = self.health.states(e.name for e in endpoints)
            if not unknown and any(s.healthy for s in states.values()):
                continue
            for tenant in self.backlog.tenants(model):
                members = self.client.zrange(keys.backlog(model, tenant), 0, 99)
                for raw_id in members:
                    waiting = self.backlog.waiting(text(raw_id))
                    if waiting is None:
                        continue
                    overdue = now - waiting.at >= self.settings.runtime_wait_seconds
                    expired = waiting.deadline is not None and waiting.deadline <= now
                    if (unknown or overdue or expired) and self.backlog.take(
                        model, tenant, waiting.job_id
                    ):
                        reason = UNKNOWN_MODEL if unknown else ""
                        self._publish(waiting, {"endpoint": FORCED, "token": "", "reason": reason})

    def close(self) -> None:
        with self._lock:
            for client in self._http.values():
                client.close()
            self._http.clear()


_dispatchers: dict[tuple[int, int], Dispatcher] = {}
_dispatchers_lock = threading.Lock()


def dispatcher_for(app: Celery, settings: Settings, publish: Publish) -> Dispatcher:
    """This process's dispatcher for ``app`` (rebuilt after a fork: no shared connection).
    ``genq.dispatch.fleet_dispatcher`` is the way in (it passes the broker's publish)."""
    key = (os.getpid(), id(app))
    with _dispatchers_lock:
        found = _dispatchers.get(key)
        if found is None:
            client = redis.Redis.from_url(
                settings.redis_url,
                socket_timeout=c.REDIS_SOCKET_TIMEOUT_SECONDS,
                socket_connect_timeout=c.REDIS_CONNECT_TIMEOUT_SECONDS,
            )
            found = _dispatchers[key] = Dispatcher(app, settings, client, publish)
        return found
