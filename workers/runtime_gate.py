"""Hold a worker's next job while its runtime cannot be reached, instead of spending its attempts.

A runtime that is restarting (a crash under ``genq up``, a redeploy, a model still loading)
refuses connections for seconds. Without a gate, a worker takes job after job from the queue
and fails each at once with ``runtime_unavailable``, spending a retry of every queued job in
those seconds and dead-lettering the ones that were already retried. With it, after the
runtime was found unreachable (or before the first job, when nothing is known yet) the worker
probes the runtime until it answers, up to ``wait_seconds``, before it starts the next job; the
job stays ``queued`` meanwhile and its message stays in this worker, not in the runtime's queue.
Past ``wait_seconds`` the job is tried anyway and follows the retry rules.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["RuntimeGate"]


@dataclass
class RuntimeGate:
    """Whether this worker process may hand its next job to the runtime now."""

    probe: Callable[[], bool]  # True when the runtime answers
    wait_seconds: float
    poll_seconds: float = 1.0
    clock: Callable[[], float] = field(default=time.monotonic)
    sleep: Callable[[float], None] = field(default=time.sleep)
    answering: bool = False  # known to answer: no probe before the next job

    def mark_unreachable(self) -> None:
        self.answering = False

    def wait_until_answering(self) -> bool:
        """Probe until the runtime answers or ``wait_seconds`` pass; True if it answered."""
        if self.answering:
            return True
        deadline = self.clock() + self.wait_seconds
        while True:
            if self.probe():
                self.answering = True
                return True
            remaining = deadline - self.clock()
            if remaining <= 0:
                return False
            self.sleep(min(self.poll_seconds, remaining))
