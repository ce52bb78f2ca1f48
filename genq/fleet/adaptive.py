"""Adaptive slots: an endpoint with ``slots = "auto"`` finds its best concurrency by itself.

A gradient controller in the spirit of Netflix concurrency-limits' Gradient2 and TCP Vegas,
over the two signals an LLM runtime gives per request: time to first token (TTFT) and the time
per generated token after it (TPOT, the inverse of the request's tokens/s).

- It starts at 1 slot. Requests are judged in windows: a window closes once it holds
  ``max(MIN_WINDOW, 2 * limit)`` requests that started while the endpoint ran at its limit
  (in flight at start = limit, so an idle endpoint teaches nothing) under the current limit.
- The window's median TPOT and mean TTFT are compared with a no-load reference (the best
  window seen so far, creeping towards later healthy windows, and taken afresh by a slow window
  at one slot, so a machine that got slower is not held to an old record):
  ``gradient = min(ref_tpot / tpot, (ref_ttft + slack) / (ttft + slack))``, at most 1. The
  slack is a typical request's decode time (at least 250 ms): a first token later by a part of
  that is noise, one that waited another whole request inside the runtime (a runtime that
  queues) is not.
- Gradient at least ``TOLERANCE``: the requests still run as fast as alone; add one slot
  (after ``hold`` windows, if it has just backed off). Below, two windows in a row (or one
  below ``SEVERE``: a busy machine makes one window slow now and then): the runtime is past its
  true parallelism, so shrink to ``round(limit * gradient)`` (at least one less): if throughput
  saturates at N slots, each request runs N/limit as fast, so this lands on N in one step.
  Then hold ``HOLD_WINDOWS`` windows before probing upwards again.
- A 429 or 503 from the runtime halves the limit at once (AIMD's multiplicative decrease).
- Bounded by 1 and the endpoint's maximum (``adaptive_max_slots``, default 8).

It oscillates between the knee N and N + 1 while probing, which costs no throughput when the
runtime saturates at N (it serves the same tokens/s at N + 1). ``TOLERANCE`` = 0.9 detects a
knee up to 8 (at N = 9, one more request slows each by only 10 %).

The decisions are pure (``Controller.observe``); ``AdaptiveSlots`` keeps one controller per
endpoint in Redis, shared by every worker and dispatcher, updated under WATCH/MULTI.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from genq import constants as c

KEY_PREFIX = f"{c.REDIS_KEY_PREFIX}adaptive:"  # + endpoint: its controller, as JSON
TOLERANCE = 0.9
SEVERE = 0.7  # a window this degraded shrinks the limit at once; milder ones need two in a row
MIN_WINDOW = 4
HOLD_WINDOWS = 2
TTFT_SLACK_SECONDS = 0.25
REFERENCE_CREEP = 0.2  # a healthy window moves a stale reference this far towards itself
HISTORY = 32  # the limits after the last windows, for operators and tests
STATE_TTL_SECONDS = 7 * 86_400
WATCH_ATTEMPTS = 50


@dataclass(frozen=True)
class Sample:
    """One finished request on the endpoint."""

    limit: int  # the endpoint's limit when the request started
    inflight: int  # requests in flight on the endpoint when it started, itself included
    ttft_seconds: float | None
    tokens: int  # generated tokens
    duration_seconds: float  # from the request to its last token

    @property
    def seconds_per_token(self) -> float | None:
        """Time per generated token after the first (all of them without a TTFT)."""
        if self.ttft_seconds is None:
            return self.duration_seconds / self.tokens if self.tokens > 0 else None
        if self.tokens < 2:
            return None
        return max(0.0, self.duration_seconds - self.ttft_seconds) / (self.tokens - 1)


@dataclass
class Controller:
    """The state of one endpoint's controller; ``observe`` and ``overloaded`` change it."""

    max_limit: int
    limit: int = 1
    ref_tpot: float | None = None
    ref_ttft: float | None = None
    hold: int = 0
    strikes: int = 0  # degraded windows in a row
    tpots: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    history: list[int] = field(default_factory=list)
    # the last windows as [limit, median TPOT ms, median TTFT ms, gradient], for operators
    windows: list[list[float]] = field(default_factory=list)

    def window_size(self) -> int:
        return max(MIN_WINDOW, 2 * self.limit)

    def observe(self, sample: Sample) -> bool:
        """Take a finished request into the current window; True when it closed a window."""
        tpot = sample.seconds_per_token
        if sample.limit != self.limit or sample.inflight < self.limit or tpot is None:
            return False  # from another limit, an endpoint not running full, or no tokens
        self.tpots.append(tpot)
        self.ttfts.append(sample.ttft_seconds if sample.ttft_seconds is not None else 0.0)
        self.tokens.append(sample.tokens)
        if len(self.tpots) < self.window_size():
            return False
        # TTFT by its mean: when a runtime queues, a few requests wait a whole request longer,
        # which a median does not see until half of them do.
        ttft = statistics.fmean(self.ttfts)
        tokens = statistics.median(self.tokens)
        self._close_window(statistics.median(self.tpots), ttft, tokens)
        return True

    def _close_window(self, tpot: float, ttft: float, tokens: float) -> None:
        self.tpots, self.ttfts, self.tokens = [], [], []
        if self.ref_tpot is None or self.ref_ttft is None:
            self.ref_tpot, self.ref_ttft = tpot, ttft
        # A first token later by a small part of what a request takes is noise; one that waited
        # another request's time inside the runtime (a runtime queueing) is not.
        slack = max(TTFT_SLACK_SECONDS, tokens * self.ref_tpot)
        grad = gradient(self.ref_tpot, self.ref_ttft, tpot, ttft, slack)
        if grad < TOLERANCE and self.limit == 1:
            # One request alone is the no-load case by definition: the machine (or the model)
            # got slower since the reference was taken. Start from what it does now.
            self.ref_tpot, self.ref_ttft, grad = tpot, ttft, 1.0
        seen = [self.limit, round(tpot * 1000, 2), round(ttft * 1000, 2), round(grad, 3)]
        self.windows = [*self.windows, seen][-HISTORY:]
        if grad >= TOLERANCE:
            self.strikes = 0
            self.ref_tpot = _towards(self.ref_tpot, tpot)
            self.ref_ttft = _towards(self.ref_ttft, ttft)
            if self.hold > 0:
                self.hold -= 1
            else:
                self.limit = min(self.max_limit, self.limit + 1)
        elif grad < SEVERE or self.strikes >= 1:
            self.limit = max(1, min(self.limit - 1, round(self.limit * grad)))
            self.hold, self.strikes = HOLD_WINDOWS, 0
        else:
            self.strikes += 1  # one mildly slow window may be the machine: look again
        self._remember()

    def overloaded(self) -> None:
        """The runtime refused work (429/503): halve the limit and hold."""
        self.limit = max(1, self.limit // 2)
        self.hold, self.strikes = HOLD_WINDOWS, 0
        self.tpots, self.ttfts, self.tokens = [], [], []
        self._remember()

    def _remember(self) -> None:
        self.history = [*self.history, self.limit][-HISTORY:]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes | None, max_limit: int) -> Controller:
        """The stored state (a fresh controller when there is none); the configured maximum
        wins over the stored one, so lowering it takes effect at once."""
        if not raw:
            return cls(max_limit=max_limit)
        state: dict[str, Any] = json.loads(raw)
        state["max_limit"] = max_limit
        controller = cls(**state)
        controller.limit = min(controller.limit, max_limit)
        return controller


def gradient(
    ref_tpot: float, ref_ttft: float, tpot: float, ttft: float, slack: float = TTFT_SLACK_SECONDS
) -> float:
    """How fast requests run now against no load: 1 = as fast, 0.5 = half as fast. TTFT is
    judged with ``slack`` seconds added to both sides."""
    by_tokens = ref_tpot / tpot if tpot > 0 else 1.0
    by_first = (ref_ttft + slack) / (ttft + slack)
    return min(1.0, by_tokens, by_first)


def _towards(reference: float, value: float) -> float:
    """A better value replaces the reference; a worse (still healthy) one moves it a little."""
    return value if value < reference else reference + REFERENCE_CREEP * (value - reference)


def state_key(endpoint: str) -> str:
    return f"{KEY_PREFIX}{endpoint}"


class AdaptiveSlots:
    """One endpoint's controller, kept in Redis. No I/O until a method is called."""

    def __init__(self, client: redis.Redis, endpoint: str, max_limit: int) -> None:
        self.client = client
        self.endpoint = endpoint
        self.max_limit = max_limit
        self.key = state_key(endpoint)

    def controller(self) -> Controller:
        """The current state (read only)."""
        return Controller.from_json(self.client.get(self.key), self.max_limit)

    def limit(self) -> int:
        """The endpoint's slots now."""
        return self.controller().limit

    def record(self, sample: Sample) -> Controller:
        """Take one finished request; returns the state after it."""
        return self._update(lambda controller: controller.observe(sample))

    def overloaded(self) -> Controller:
        """The runtime answered 429 or 503."""
        return self._update(lambda controller: controller.overloaded())

    def _update(self, change: Callable[[Controller], object]) -> Controller:
        for _ in range(WATCH_ATTEMPTS):
            with self.client.pipeline() as pipe:
                try:
                    pipe.watch(self.key)  # type: ignore[no-untyped-call]
                    controller = Controller.from_json(pipe.get(self.key), self.max_limit)
                    change(controller)
                    pipe.multi()
                    pipe.set(self.key, controller.to_json(), ex=STATE_TTL_SECONDS)
                    pipe.execute()
                    return controller
                except redis.WatchError:
                    continue
        raise RuntimeError(f"adaptive slots of {self.endpoint!r}: too much contention")


def current_limit(client: redis.Redis, endpoint: Any) -> int:
    """The slots of an endpoint with ``slots = "auto"`` now (``genq.fleet.slots.slots_for``):
    its controller's limit, 1 before it has one. ``endpoint`` is the fleet's ``Endpoint``."""
    raw = client.get(state_key(endpoint.name))
    return Controller.from_json(raw, max_limit=1 << 16).limit if raw else 1
