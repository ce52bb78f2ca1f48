"""Each endpoint's health, shared in Redis: a circuit breaker and the figures ``/readyz``,
``genq runtimes`` and the metrics show.

An endpoint that refuses connections goes into cooldown at once; one that answers 5xx (or drops
a stream) does after ``fleet_breaker_failures`` such failures in a row. In cooldown it gets no
jobs; once ``fleet_breaker_cooldown_seconds`` have passed, a probe of its model list (not a job,
which would spend a retry) decides whether it is healthy again or stays in cooldown for another
period. A success resets the count.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from genq.fleet import keys
from genq.fleet.scripts import run_script

__all__ = ["EndpointState", "HealthBook"]

HEALTHY = "healthy"
COOLDOWN = "cooldown"
_TTFT_ALPHA = 0.2  # the weight of the newest sample in the time-to-first-token average


@dataclass(frozen=True)
class EndpointState:
    """What is known of one endpoint's health."""

    state: str = HEALTHY
    until: float = 0.0
    failures: int = 0
    errors: int = 0
    requests: int = 0
    ttft_ms: float | None = None
    last_error: str = ""

    @property
    def healthy(self) -> bool:
        return self.state != COOLDOWN


# KEYS: state hash. ARGV: immediate (0/1), threshold, cooldown s, now, message.
_FAILURE = """
redis.call('HINCRBY', KEYS[1], 'errors', 1)
redis.call('HINCRBY', KEYS[1], 'requests', 1)
redis.call('HSET', KEYS[1], 'last_error', ARGV[5])
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if ARGV[1] == '1' or failures >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'cooldown', 'until', tonumber(ARGV[4]) + tonumber(ARGV[3]))
  return 1
end
return 0
"""

# KEYS: state hash. ARGV: ttft ms ('' if none), alpha.
_SUCCESS = """
redis.call('HINCRBY', KEYS[1], 'requests', 1)
redis.call('HSET', KEYS[1], 'failures', 0)
if ARGV[1] ~= '' then
  local old = redis.call('HGET', KEYS[1], 'ttft_ms')
  local new = tonumber(ARGV[1])
  if old then new = tonumber(old) * (1 - tonumber(ARGV[2])) + new * tonumber(ARGV[2]) end
  redis.call('HSET', KEYS[1], 'ttft_ms', new)
end
return 0
"""


class HealthBook:
    """Reads and writes endpoints' health in Redis."""

    def __init__(self, client: redis.Redis, *, failures: int, cooldown_seconds: float) -> None:
        self.client = client
        self.threshold = failures
        self.cooldown_seconds = cooldown_seconds
        self._failure = client.register_script(_FAILURE)
        self._success = client.register_script(_SUCCESS)

    def failed(self, endpoint: str, message: str, *, immediate: bool, client: Any = None) -> bool:
        """Count a failure; True if the endpoint is now in cooldown. With ``client`` a pipeline,
        the write is queued on it (and its result, the same flag, comes from its execute)."""
        return bool(
            run_script(
                self._failure,
                [keys.endpoint_state(endpoint)],
                [int(immediate), self.threshold, self.cooldown_seconds, time.time(), message[:300]],
                client,
            )
        )

    def succeeded(self, endpoint: str, ttft_seconds: float | None, client: Any = None) -> None:
        ttft = "" if ttft_seconds is None else f"{ttft_seconds * 1000:.3f}"
        run_script(self._success, [keys.endpoint_state(endpoint)], [ttft, _TTFT_ALPHA], client)

    def probe_due(self, endpoints: Iterable[str]) -> list[str]:
        """Endpoints in cooldown whose period is over: to be probed now."""
        names = list(endpoints)
        now = time.time()
        return [n for n, s in self.states(names).items() if not s.healthy and s.until <= now]

    def recovered(self, endpoint: str) -> None:
        self.client.hset(keys.endpoint_state(endpoint), mapping={"state": HEALTHY, "failures": 0})

    def still_down(self, endpoint: str, message: str) -> None:
        until = time.time() + self.cooldown_seconds
        self.client.hset(
            keys.endpoint_state(endpoint),
            mapping={"state": COOLDOWN, "until": until, "last_error": message[:300]},
        )

    def states(self, endpoints: Iterable[str]) -> dict[str, EndpointState]:
        names = list(endpoints)
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(keys.endpoint_state(name))
        out = {}
        for name, raw in zip(names, pipe.execute(), strict=True):
            h = {k.decode(): v.decode() for k, v in raw.items()}
            out[name] = EndpointState(
                state=h.get("state", HEALTHY),
                until=float(h.get("until", 0) or 0),
                failures=int(h.get("failures", 0) or 0),
                errors=int(h.get("errors", 0) or 0),
                requests=int(h.get("requests", 0) or 0),
                ttft_ms=float(h["ttft_ms"]) if h.get("ttft_ms") else None,
                last_error=h.get("last_error", ""),
            )
        return out
