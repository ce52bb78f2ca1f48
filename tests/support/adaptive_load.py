"""A saturating load on one runtime endpoint, kept at the concurrency an adaptive controller
sets (or a fixed one), over real HTTP through genq's own runtime adapter: what the adaptive
slots test and benchmark drive the fake runtime with."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from genq.fleet.adaptive import AdaptiveSlots, Sample
from schemas import JobRequest
from workers.runtimes import OpenAIRuntime


@dataclass
class LoadResult:
    tokens: int = 0
    requests: int = 0
    seconds: float = 0.0
    limits: list[int] = field(default_factory=list)  # the limit at each request's start

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


class SaturatingLoad:
    """``threads`` clients, always more work than slots; at most ``limit()`` requests at once,
    where the limit is the controller's (``slots``) or ``fixed``."""

    def __init__(
        self,
        url: str,
        *,
        model: str,
        tokens: int,
        threads: int,
        slots: AdaptiveSlots | None = None,
        fixed: int | None = None,
    ) -> None:
        if (slots is None) == (fixed is None):
            raise ValueError("give either slots (adaptive) or fixed")
        self.url, self.model, self.threads = url, model, threads
        self.request = JobRequest(messages=[{"role": "user", "content": "go"}], max_tokens=tokens)
        self.slots, self.fixed = slots, fixed
        self.inflight = 0
        self.changed = threading.Condition()
        self.result = LoadResult()
        self.until: Callable[[], bool] = lambda: False

    def limit(self) -> int:
        return self.fixed if self.fixed is not None else self.slots.limit()  # type: ignore[union-attr]

    def run(self, seconds: float, until: Callable[[], bool] | None = None) -> LoadResult:
        """Keep the endpoint busy for ``seconds`` (or until ``until()`` holds, checked as each
        request starts); what it served in that time."""
        self.until = until or (lambda: False)
        stop_at = time.monotonic() + seconds
        started = time.monotonic()
        clients = [
            threading.Thread(target=self._client, args=(stop_at,), daemon=True)
            for _ in range(self.threads)
        ]
        for client in clients:
            client.start()
        for client in clients:
            client.join(timeout=seconds + 60)
        self.result.seconds = time.monotonic() - started
        return self.result

    def _client(self, stop_at: float) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            runtime = OpenAIRuntime(http)
            while time.monotonic() < stop_at and not self.until():
                limit, inflight = self._enter(stop_at)
                if not limit:
                    return
                try:
                    self._one(runtime, limit, inflight)
                finally:
                    with self.changed:
                        self.inflight -= 1
                        self.changed.notify_all()

    def _enter(self, stop_at: float) -> tuple[int, int]:
        with self.changed:
            while time.monotonic() < stop_at and not self.until():
                limit = self.limit()
                if self.inflight < limit:
                    self.inflight += 1
                    return limit, self.inflight
                self.changed.wait(0.05)
        return 0, 0

    def _one(self, runtime: OpenAIRuntime, limit: int, inflight: int) -> None:
        start = time.monotonic()
        ttft = None
        tokens = 0
        for event in runtime.stream(self.request, self.model):
            if event.delta:
                tokens += 1
                if ttft is None:
                    ttft = time.monotonic() - start
        duration = time.monotonic() - start
        with self.changed:
            self.result.tokens += tokens
            self.result.requests += 1
            self.result.limits.append(limit)
        if self.slots is not None:
            self.slots.record(Sample(limit, inflight, ttft, tokens, duration))
