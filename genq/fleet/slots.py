"""Slot leases: an endpoint's requests in flight, across every worker on every host.

Each endpoint has a sorted set of slot tokens scored by their lease's expiry. Reserving a slot
is one Lua script that drops expired leases, counts the rest and adds a token only under the
endpoint's ``slots``, so no two dispatchers can overfill an endpoint. The holder renews its
token while the request runs and removes it at the end; a holder that dies stops renewing and
its slot comes back when the lease expires (at most ``fleet_slot_lease_seconds`` later).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis

from genq.fleet import keys
from genq.fleet.backlog import text
from genq.fleet.config import Endpoint
from genq.fleet.scripts import run_script

__all__ = ["Candidate", "Claim", "Reservation", "SlotTable", "slots_for"]


def slots_for(client: redis.Redis, endpoint: Endpoint) -> int:
    """How many requests ``endpoint`` may run at once now. ``slots = "auto"`` is adaptive
    (genq.fleet.adaptive, when present); until it has a figure, 1."""
    if endpoint.slots != "auto":
        return endpoint.slots
    try:
        from genq.fleet import adaptive
    except ImportError:
        return 1
    limit = getattr(adaptive, "current_limit", None)
    return int(limit(client, endpoint)) if limit is not None else 1


@dataclass(frozen=True)
class Reservation:
    """A slot taken on ``endpoint``: its token, and the endpoint's load when it was taken."""

    endpoint: str
    token: str
    in_flight: int  # other leases held on the endpoint at that moment
    slots: int


@dataclass(frozen=True)
class Candidate:
    """An endpoint that may take the next job: its slots now, weight, and preference (2: the
    job's session ran there last, 1: the runtime has the model loaded, 0: neither)."""

    name: str
    slots: int
    weight: float = 1.0
    preference: int = 0


@dataclass(frozen=True)
class Claim:
    """A waiting job a dispatcher means to release (``SlotTable.claim``), with what taking it
    charges its tenant (``charge`` on ``charge_key``'s ``charge_field``, which lives
    ``charge_ttl`` seconds)."""

    job_id: str
    tenant: str
    model: str
    charge_key: str
    charge_field: str
    charge: float
    charge_ttl: int


# Claim: take a waiting job out of its backlog together with a slot for it, in one step, so a
# dispatcher never holds a slot without its job or a job without its slot, and charge the job's
# estimate to its tenant's fair-share counter. Time is Redis's (TIME), so hosts with skewed
# clocks agree on when a lease expires. Among healthy candidates with a free slot it picks the
# preferred (while it has room), then the least loaded (in flight / slots), then the one with
# more free slots, then the heavier weight; a lapsed lease found on the way is dropped with its
# record of the job it was held for.
# KEYS: slot->job hash, backlog, tenants, waiting models, fair pool, then per candidate: slots
# zset, state hash. ARGV: lease ms, token, job id, tenant, model, counter field, charge, fair
# TTL s, then per candidate: slots, weight, preference.
# Returns {1, index, used}: claimed; {0}: no free slot; {-1}: the job is no longer waiting.
_CLAIM = """
if not redis.call('ZSCORE', KEYS[2], ARGV[3]) then return {-1} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local best, best_score, best_used = nil, nil, 0
for i = 1, (#KEYS - 5) / 2 do
  local zs, hs = KEYS[5 + 2 * i - 1], KEYS[5 + 2 * i]
  for _, lapsed in ipairs(redis.call('ZRANGEBYSCORE', zs, '-inf', now)) do
    redis.call('HDEL', KEYS[1], lapsed)
  end
  redis.call('ZREMRANGEBYSCORE', zs, '-inf', now)
  if redis.call('HGET', hs, 'state') ~= 'cooldown' then
    local slots = tonumber(ARGV[8 + 3 * i - 2])
    local weight = tonumber(ARGV[8 + 3 * i - 1])
    local pref = tonumber(ARGV[8 + 3 * i])
    local used = redis.call('ZCARD', zs)
    if used < slots then
      local score = pref * 1000 + (1 - used / slots) * 100 + (slots - used) * 0.1 + weight * 0.001
      if best == nil or score > best_score then best, best_score, best_used = i, score, used end
    end
  end
end
if best == nil then return {0} end
redis.call('ZADD', KEYS[5 + 2 * best - 1], now + tonumber(ARGV[1]), ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
if redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[4])
  if redis.call('SCARD', KEYS[3]) == 0 then redis.call('SREM', KEYS[4], ARGV[5]) end
end
if tonumber(ARGV[7]) ~= 0 then
  redis.call('HINCRBYFLOAT', KEYS[5], ARGV[6], ARGV[7])
  redis.call('EXPIRE', KEYS[5], ARGV[8])
end
return {1, best, best_used}
"""

# Whether any candidate has a free slot now (read only). KEYS: slots zset, state hash (per
# candidate, in pairs). ARGV: per candidate, its slots. Returns 1 or 0.
_ROOM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #KEYS / 2 do
  if redis.call('HGET', KEYS[2 * i], 'state') ~= 'cooldown'
     and redis.call('ZCOUNT', KEYS[2 * i - 1], '(' .. now, '+inf') < tonumber(ARGV[i]) then
    return 1
  end
end
return 0
"""

# Renew a held token; if its lease already expired, take a slot again only if one is free.
# KEYS: slots zset. ARGV: (unused), lease ms, token, slots. Returns 1 if held.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  return 1
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  return 1
end
return 0
"""


# Give back a slot the dispatcher reserved for a job's message if no worker has taken that
# message: a reservation lives max(lease, redispatch-after) until a worker renews it to a
# lease's length, so one that still runs past a lease from now is untaken. Atomic, so a worker
# taking the message meanwhile keeps its slot. KEYS: slots zset, slot->job hash. ARGV: token,
# lease ms. Returns 1 if given back.
_FREE_UNTAKEN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if expiry and tonumber(expiry) > now + tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 1
end
return 0
"""


class SlotTable:
    """Slot leases in Redis; ``lease_seconds`` is how long a token lives unless renewed."""

    def __init__(
        self, client: redis.Redis, lease_seconds: float, pending_seconds: float | None = None
    ) -> None:
        self.client = client
        self.lease_ms = int(lease_seconds * 1000)
        # A slot reserved for a message still in the broker lives this long: no worker renews
        # it before one takes the message, which may be a while if every worker is down.
        self.pending_ms = int(max(lease_seconds, pending_seconds or 0) * 1000)
        self._claim = client.register_script(_CLAIM)
        self._renew = client.register_script(_RENEW)
        self._room = client.register_script(_ROOM)
        self._free_untaken = client.register_script(_FREE_UNTAKEN)

    def has_room(self, candidates: Sequence[Candidate], pipe: Any = None) -> bool:
        """Whether ``claim`` could take a slot on one of ``candidates`` now: one read, so a
        dispatcher facing full endpoints (the usual case under a backlog) stops there. With
        ``pipe``, the read is queued on it (its result, 1 or 0, comes from the execute)."""
        if not candidates:
            return False
        key_list: list[str] = []
        for cand in candidates:
            key_list += [keys.slots(cand.name), keys.endpoint_state(cand.name)]
        args = [cand.slots for cand in candidates]
        return bool(run_script(self._room, key_list, args, pipe))

    def claim(
        self, candidates: Sequence[Candidate], job: Claim
    ) -> Reservation | Literal[False] | None:
        """Take ``job`` out of its backlog with a slot on the best candidate, charging its
        tenant, in one step: the reservation; None if every candidate is full or in cooldown
        (the job keeps waiting); False if the job is no longer waiting (another dispatcher
        took it, or it was forgotten)."""
        if not candidates:
            return None
        token = uuid.uuid4().hex
        key_list = [
            keys.SLOT_JOBS,
            keys.backlog(job.model, job.tenant),
            keys.tenants(job.model),
            keys.WAITING,
            job.charge_key,
        ]
        args: list[str | int | float] = [
            self.pending_ms,
            token,
            job.job_id,
            job.tenant,
            job.model,
            job.charge_field,
            job.charge,
            job.charge_ttl,
        ]
        for cand in candidates:
            key_list += [keys.slots(cand.name), keys.endpoint_state(cand.name)]
            args += [cand.slots, cand.weight, cand.preference]
        outcome = self._claim(keys=key_list, args=args)
        if int(outcome[0]) < 0:
            return False
        if int(outcome[0]) == 0:
            return None
        cand = candidates[int(outcome[1]) - 1]
        return Reservation(cand.name, token, int(outcome[2]), cand.slots)

    def renew(self, endpoint: str, token: str, slots: int, pipe: Any = None) -> bool:
        """Extend a held slot's lease (or take one again if it lapsed and one is free). With
        ``pipe``, queued on it (its result, 1 if held, comes from the execute)."""
        return bool(
            run_script(
                self._renew, [keys.slots(endpoint)], [_now_ms(), self.lease_ms, token, slots], pipe
            )
        )

    def release(self, endpoint: str, token: str, pipe: redis.client.Pipeline | None = None) -> None:
        """Free a held slot; with ``pipe``, queue the two writes on it (the caller executes)."""
        target = pipe if pipe is not None else self.client.pipeline(transaction=False)
        target.zrem(keys.slots(endpoint), token)
        target.hdel(keys.SLOT_JOBS, token)
        if pipe is None:
            target.execute()

    def reservations(self) -> dict[str, list[str]]:
        """The slot tokens held for each job (job id -> tokens)."""
        held: dict[str, list[str]] = {}
        for token, job_id in self.client.hgetall(keys.SLOT_JOBS).items():
            held.setdefault(text(job_id), []).append(text(token))
        return held

    def free_untaken(self, endpoint: str, token: str) -> bool:
        """Give back ``token`` if it is a reservation no worker took (its message is lost):
        one a worker renewed, or renews meanwhile, stays. True if given back."""
        return bool(
            self._free_untaken(
                keys=[keys.slots(endpoint), keys.SLOT_JOBS], args=[token, self.lease_ms]
            )
        )

    def in_flight(self, endpoints: Iterable[str]) -> dict[str, int]:
        """Unexpired slot leases per endpoint."""
        names = list(endpoints)
        seconds, micros = self.client.time()
        now = int(seconds) * 1000 + int(micros) // 1000
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.zcount(keys.slots(name), f"({now}", "+inf")
        return {name: int(n) for name, n in zip(names, pipe.execute(), strict=True)}


def _now_ms() -> int:
    return int(time.time() * 1000)
