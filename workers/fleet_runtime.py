"""A worker process's side of the runtime fleet: one adapter per endpoint, the slot leases this
process holds (renewed by its keeper thread, which also runs the dispatcher's tick), and what
an attempt tells the fleet when it ends (health, time to first token, usage)."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import redis

from genq import constants as c
from genq.fleet.accounting import Finished, on_finished
from genq.fleet.backlog import Waiting
from genq.fleet.config import Endpoint
from genq.fleet.dispatcher import Dispatcher
from genq.settings import Settings
from schemas import ErrorCode, GenqError
from workers.runtimes import Runtime, build_runtime

__all__ = ["AttemptNotes", "FleetSide", "Slot"]

log = logging.getLogger(__name__)

_STATUS_RE = re.compile(r"answered HTTP (\d{3})")


@dataclass(frozen=True)
class Slot:
    """The slot a released job's message carries (see ``Dispatcher.release_one``)."""

    endpoint: str
    token: str
    in_flight: int = 0
    slots: int = 1
    reason: str = ""  # with no endpoint: why (genq.fleet.dispatcher.UNKNOWN_MODEL, else none)

    @classmethod
    def from_message(cls, raw: object) -> Slot | None:
        if not isinstance(raw, dict) or not isinstance(raw.get("endpoint"), str):
            return None
        return cls(
            endpoint=raw["endpoint"],
            token=str(raw.get("token") or ""),
            in_flight=int(raw.get("in_flight") or 0),
            slots=int(raw.get("slots") or 1),
            reason=str(raw.get("reason") or ""),
        )


@dataclass
class AttemptNotes:
    """What one attempt observed, for the fleet's health and accounting."""

    started: float = field(default_factory=time.monotonic)
    first_token: float | None = None
    last_token: float | None = None  # the stream's end, before the settle (adaptive slots)
    usage: dict[str, int] | None = None
    error: GenqError | None = None
    # Called once, as soon as the runtime's part of the attempt is over (``done``).
    on_done: Callable[[AttemptNotes], None] | None = None
    _done: bool = False

    def done(self) -> None:
        """The runtime answered (or failed): let ``on_done`` run, once."""
        if not self._done and self.on_done is not None:
            self._done = True
            self.on_done(self)

    @property
    def ttft_seconds(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.started

    @property
    def status(self) -> int | None:
        if self.error is None:
            return None
        found = _STATUS_RE.search(self.error.message)
        return int(found.group(1)) if found else None


def runtime_client_for(endpoint: Endpoint, settings: Settings, slots: int) -> httpx.Client:
    key = endpoint.api_key()
    timeout = httpx.Timeout(
        connect=c.RUNTIME_CONNECT_TIMEOUT_SECONDS,
        read=settings.runtime_read_timeout_seconds,
        write=30.0,
        pool=30.0,
    )
    return httpx.Client(
        base_url=endpoint.url or "",
        headers={"Authorization": f"Bearer {key}"} if key else {},
        timeout=timeout,
        limits=httpx.Limits(max_connections=slots * 2 + 2),
    )


class FleetSide:
    """Per worker process; builds nothing until used."""

    def __init__(self, settings: Settings, dispatcher: Dispatcher) -> None:
        self.settings = settings
        self.dispatcher = dispatcher
        self._runtimes: dict[str, tuple[httpx.Client, Runtime]] = {}
        self._held: dict[str, tuple[str, int]] = {}  # token -> (endpoint, slots)
        self._finished: list[str] = []  # jobs whose backlog records go at the next write
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def runtime(self, name: str) -> Runtime | None:
        """The adapter for endpoint ``name`` (None if the fleet has no such endpoint)."""
        with self._lock:
            found = self._runtimes.get(name)
            if found is None:
                endpoint = self.dispatcher.fleet.by_name(name)
                if endpoint is None:
                    return None
                auto = self.settings.adaptive_max_slots
                slots = endpoint.slots if isinstance(endpoint.slots, int) else auto
                client = runtime_client_for(endpoint, self.settings, slots)
                found = (client, build_runtime(endpoint.protocol, client))
                self._runtimes[name] = found
            return found[1]

    def start(self) -> None:
        """Start the keeper thread (renewals and the tick), once per process, and build each
        endpoint's client now (an httpx client costs tens of milliseconds to build: not in the
        gap between two jobs on an endpoint)."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="genq-fleet", daemon=True)
            self._thread.start()
        for endpoint in self.dispatcher.fleet.endpoints:
            self.runtime(endpoint.name)

    def hold(self, slot: Slot, job_id: str) -> tuple[bool, Waiting | None]:
        """Take over the slot the dispatcher reserved for job ``job_id`` (renewing its lease
        now), and read what the backlog kept of the job (its cost estimate), in one round trip.
        Held is False if the slot lapsed while the message waited and the endpoint has no
        free slot; the job's record is None if Redis cannot say."""
        waiting = None
        try:
            pipe = self.dispatcher.client.pipeline(transaction=False)
            self.dispatcher.slots.renew(slot.endpoint, slot.token, slot.slots, pipe)
            self.dispatcher.backlog.waiting_into(pipe, job_id)
            renewed, raw = pipe.execute()
            held, waiting = bool(renewed), self.dispatcher.backlog.parse_waiting(raw)
        except redis.RedisError as exc:
            # Redis is away (restarting): the reservation this message carries is still this
            # job's (its lease outlives a message's wait in the broker). Run it; the keeper
            # renews the lease once Redis answers. Failing the delivery here would make the
            # consumer reject a message on a broken connection, which kills a Celery worker.
            log.warning("could not renew slot on %s (%s): running on it", slot.endpoint, exc)
            held = True
        if not held:
            return False, waiting
        with self._lock:
            self._held[slot.token] = (slot.endpoint, slot.slots)
        self.start()
        return True, waiting

    def forget_later(self, job_id: str) -> None:
        """The job has finished: drop its backlog records (rank, release payload) with this
        process's next fleet write, a slot given back or the keeper's next round, rather than
        in a round trip of its own. A late forget is harmless (``Backlog.forget``)."""
        with self._lock:
            self._finished.append(job_id)

    def _forget_finished(self, pipe: redis.client.Pipeline | None = None) -> None:
        with self._lock:
            finished, self._finished = self._finished, []
        if finished:
            self.dispatcher.backlog.forget(finished, pipe)

    def let_go(self, slot: Slot) -> None:
        """Stop renewing ``slot`` without giving it back: it belongs to an attempt running
        elsewhere (this was a redelivery of its message), which gives it back when it ends, or
        whose lease lapses if its worker died."""
        with self._lock:
            self._held.pop(slot.token, None)

    def release(self, slot: Slot) -> None:
        """Give the slot back and release the next job into it (once; again is a no-op)."""
        with self._lock:
            if self._held.pop(slot.token, None) is None:
                return
        try:
            self.dispatcher.give_back(slot.endpoint, slot.token)
        except Exception:  # the lease expires by itself; the tick pumps
            log.warning("could not give back slot on %s", slot.endpoint, exc_info=True)

    def finish(
        self,
        slot: Slot,
        *,
        job_id: str,
        tenant: str,
        model: str,
        notes: AttemptNotes,
        estimate: float,
    ) -> None:
        """The runtime's part of the attempt is over: give the slot back and tell the fleet how
        it went (the endpoint's health, the tenant's real cost) in one round trip, then release
        the next job into the slot (once; ``release`` afterwards is a no-op). Never raises: the
        lease expires by itself and the tick pumps."""
        with self._lock:
            if self._held.pop(slot.token, None) is None:
                return
        error = notes.error
        failed = error is not None and error.code is ErrorCode.RUNTIME_UNAVAILABLE
        health = self.dispatcher.health
        finished = Finished(
            job_id=job_id,
            tenant=tenant,
            model=model,
            endpoint=slot.endpoint,
            estimate=estimate,
            usage=notes.usage,
            ttft_seconds=notes.ttft_seconds,
            duration_seconds=(notes.last_token or time.monotonic()) - notes.started,
            status=notes.status,
            in_flight_at_start=slot.in_flight,
            limit_at_start=slot.slots,
        )

        def tell(pipe: redis.client.Pipeline) -> None:
            if error is None or error.code is ErrorCode.RATE_LIMITED or not error.retryable:
                health.succeeded(slot.endpoint, notes.ttft_seconds, client=pipe)
            elif failed and error is not None:
                refused = isinstance(error.__cause__, httpx.ConnectError)
                health.failed(slot.endpoint, error.message, immediate=refused, client=pipe)
            on_finished(self.dispatcher.client, self.settings, finished, pipe)
            self._forget_finished(pipe)

        try:
            told = self.dispatcher.give_back(slot.endpoint, slot.token, tell, model)
        except Exception:
            log.warning("could not give back slot on %s", slot.endpoint, exc_info=True)
            return
        if failed and error is not None and told and told[0]:
            log.warning("runtime endpoint %s in cooldown: %s", slot.endpoint, error.message)

    def _run(self) -> None:
        tick = self.settings.fleet_tick_seconds
        renew_every = min(tick, self.settings.fleet_slot_lease_seconds / 3)
        next_tick = 0.0
        while not self._stop.wait(renew_every):
            with self._lock:
                held = list(self._held.items())
            for token, (endpoint, slots) in held:
                try:
                    self.dispatcher.slots.renew(endpoint, token, slots)
                except Exception:  # a Redis blip: the lease has slack
                    log.warning("slot renewal failed on %s", endpoint, exc_info=True)
            try:
                self._forget_finished()
            except Exception:  # a Redis blip: forgotten at a later round (or never: harmless)
                log.warning("could not drop finished jobs' backlog records", exc_info=True)
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + tick
                try:
                    self.dispatcher.tick()
                except Exception:
                    log.warning("fleet tick failed", exc_info=True)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        try:
            self._forget_finished()
        except Exception:
            log.warning("could not drop finished jobs' backlog records", exc_info=True)
        with self._lock:
            for client, _ in self._runtimes.values():
                client.close()
            self._runtimes.clear()
