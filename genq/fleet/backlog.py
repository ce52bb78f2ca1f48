"""The backlog genq keeps per model, in Redis (whatever the broker): where jobs wait for a slot.

One sorted set per (model, tenant), ranked by priority descending then submission order, so the
first member of each is that tenant's next job (its *head*) and the dispatcher chooses among
the heads (priority first; fair share, ``genq.fleet.fairness``, chooses among equal
priorities). A job keeps its submission number across retries, so a retried job returns to its
place, not to the back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import redis

from genq.fleet import keys
from genq.fleet.scripts import run_script
from schemas.priority import PRIORITY_MAX

__all__ = ["Backlog", "Head", "Waiting", "rank_score", "text"]

_SEQ_SPAN = 10**13  # submission numbers below this; priority bands above it


def text(value: object) -> str:
    """A Redis reply as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def rank_score(priority: int, seq: int) -> float:
    """Lower goes first: priority descending, then submission order (exact in a double)."""
    return float((PRIORITY_MAX - priority) * _SEQ_SPAN + seq)


@dataclass(frozen=True)
class Waiting:
    """What releasing a job needs, kept while it waits (the request stays in the store)."""

    job_id: str
    model: str
    tenant: str
    priority: int
    kind: str
    lane: str
    estimate: float = 0.0  # tokens the job is expected to cost (prompt + max output)
    session: str | None = None  # a session/prefix key: prefer the endpoint that ran its last
    deadline: float | None = None  # unix time
    seq: int = 0
    at: float = 0.0  # unix time it (last) entered the backlog

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Waiting:
        return cls(**json.loads(raw))


@dataclass(frozen=True)
class Head:
    """A tenant's next job for a model: what the choice among tenants sees."""

    tenant: str
    job_id: str
    priority: int
    seq: int
    estimate: float
    waiting: Waiting


# Enqueue: keep the job's submission number if it has one (a retry keeps its place), then put
# it in its backlog (or in the delayed set until ARGV[3]). A job already waiting keeps its rank
# and what it entered with (when it entered: the wait for a healthy endpoint counts from then).
# KEYS: seq hash, seq counter, jobs hash, backlog, tenants, waiting, delayed.
_ENQUEUE = """
local seq = redis.call('HGET', KEYS[1], ARGV[1])
if not seq then
  seq = redis.call('INCR', KEYS[2])
  redis.call('HSET', KEYS[1], ARGV[1], seq)
end
seq = tonumber(seq)
local due = tonumber(ARGV[3])
if due <= 0 and redis.call('ZSCORE', KEYS[4], ARGV[1]) then
  return seq
end
local payload = cjson.decode(ARGV[2])
payload['seq'] = seq
redis.call('HSET', KEYS[3], ARGV[1], cjson.encode(payload))
if due > 0 then
  redis.call('ZADD', KEYS[7], due, ARGV[1])
  return seq
end
local score = (tonumber(ARGV[5]) - payload['priority']) * tonumber(ARGV[4]) + seq
redis.call('ZADD', KEYS[4], 'NX', score, ARGV[1])
redis.call('SADD', KEYS[5], payload['tenant'])
redis.call('SADD', KEYS[6], payload['model'])
return seq
"""

# Take one job out of its backlog (1 if this caller got it), tidying the tenant/model sets; a
# job released with a slot is taken by ``SlotTable.claim`` instead. KEYS: backlog, tenants,
# waiting. ARGV: job id, tenant, model.
_TAKE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[2])
  if redis.call('SCARD', KEYS[2]) == 0 then redis.call('SREM', KEYS[3], ARGV[3]) end
end
return 1
"""

# Move the delayed jobs that are due into their backlogs. KEYS: delayed, jobs. ARGV: now, span, max.
_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 200)
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  local raw = redis.call('HGET', KEYS[2], id)
  if raw then
    local p = cjson.decode(raw)
    local score = (tonumber(ARGV[3]) - p['priority']) * tonumber(ARGV[2]) + p['seq']
    redis.call('ZADD', 'genq:fleet:backlog:' .. p['model'] .. ':' .. p['tenant'], 'NX', score, id)
    redis.call('SADD', 'genq:fleet:tenants:' .. p['model'], p['tenant'])
    redis.call('SADD', 'genq:fleet:waiting', p['model'])
  end
end
return #due
"""


# Each waiting tenant's first job for a model, with its payload, in one round trip.
# KEYS: tenants set, jobs hash. ARGV: the backlog key prefix for the model ("...:<model>:").
_HEADS = """
local out = {}
for _, tenant in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local first = redis.call('ZRANGE', ARGV[1] .. tenant, 0, 0)
  if first[1] then
    table.insert(out, tenant)
    table.insert(out, first[1])
    table.insert(out, redis.call('HGET', KEYS[2], first[1]) or '')
  end
end
return out
"""


# Forget a finished job unless it waits again (in its backlog or the delayed set).
# KEYS: jobs hash, seq hash, delayed. ARGV: job id, the backlog key prefix ("...:backlog:").
_FORGET = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if raw then
  local p = cjson.decode(raw)
  local waiting = ARGV[2] .. p['model'] .. ':' .. p['tenant']
  if redis.call('ZSCORE', waiting, ARGV[1]) or redis.call('ZSCORE', KEYS[3], ARGV[1]) then
    return 0
  end
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""


class Backlog:
    """The per-model backlogs in Redis. Holds no connection of its own."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._enqueue = client.register_script(_ENQUEUE)
        self._take = client.register_script(_TAKE)
        self._promote = client.register_script(_PROMOTE)
        self._heads = client.register_script(_HEADS)
        self._forget = client.register_script(_FORGET)

    def enqueue(
        self,
        waiting: Waiting,
        *,
        countdown: float = 0.0,
        pipe: redis.client.Pipeline | None = None,
    ) -> int:
        """Put a job in its backlog (or the delayed set for ``countdown`` seconds); returns its
        submission number (0 when queued on ``pipe``: the caller executes). A job already
        waiting stays where it is."""
        now = time.time()
        payload = asdict(waiting) | {"at": now}
        due = now + countdown if countdown and countdown > 0 else 0
        args = [waiting.job_id, json.dumps(payload), due, _SEQ_SPAN, PRIORITY_MAX]
        seq = run_script(self._enqueue, self._enqueue_keys(waiting), args, pipe)
        return 0 if pipe is not None else int(seq)

    @staticmethod
    def _enqueue_keys(waiting: Waiting) -> list[str]:
        return [
            keys.SEQ,
            keys.SEQ_COUNTER,
            keys.JOBS,
            keys.backlog(waiting.model, waiting.tenant),
            keys.tenants(waiting.model),
            keys.WAITING,
            keys.DELAYED,
        ]

    def promote_due(self) -> int:
        """Delayed jobs whose time has come join their backlogs; how many."""
        return int(
            self._promote(
                keys=[keys.DELAYED, keys.JOBS], args=[time.time(), _SEQ_SPAN, PRIORITY_MAX]
            )
        )

    def models(self) -> list[str]:
        """The models with jobs waiting."""
        return sorted(text(m) for m in self.client.smembers(keys.WAITING))

    def tenants(self, model: str) -> list[str]:
        """The tenants with a job waiting for ``model`` (VTC's backlogged set)."""
        return sorted(text(t) for t in self.client.smembers(keys.tenants(model)))

    def heads(self, model: str, pipe: redis.client.Pipeline | None = None) -> list[Head]:
        """Each waiting tenant's next job for ``model``, in tenant order. With ``pipe``, the
        read is queued on it and this returns nothing: ``parse_heads`` its result."""
        flat = run_script(
            self._heads, [keys.tenants(model), keys.JOBS], [keys.backlog(model, "")], pipe
        )
        return [] if pipe is not None else self.parse_heads(model, flat)

    def parse_heads(self, model: str, flat: list[Any]) -> list[Head]:
        """``heads`` from the read's raw result."""
        heads = []
        for i in range(0, len(flat), 3):
            tenant, job_id, raw = text(flat[i]), text(flat[i + 1]), flat[i + 2]
            if not raw:  # forgotten meanwhile (finished): drop it from the backlog
                self.take(model, tenant, job_id)
                continue
            w = Waiting.from_json(raw)
            heads.append(Head(tenant, job_id, w.priority, w.seq, w.estimate, w))
        return sorted(heads, key=lambda h: h.tenant)

    def take(self, model: str, tenant: str, job_id: str) -> bool:
        """Remove ``job_id`` from its backlog; True if this caller removed it (won the race)."""
        return bool(
            self._take(
                keys=[keys.backlog(model, tenant), keys.tenants(model), keys.WAITING],
                args=[job_id, tenant, model],
            )
        )

    def withdraw(self, model: str, tenant: str, job_id: str) -> bool:
        """A queued job that will never run (cancelled, expired): out of its backlog or the
        delayed set (a retry waiting out its countdown), and forgotten. True if it was in
        either."""
        pipe = self.client.pipeline(transaction=False)
        run_script(
            self._take,
            [keys.backlog(model, tenant), keys.tenants(model), keys.WAITING],
            [job_id, tenant, model],
            pipe,
        )
        pipe.zrem(keys.DELAYED, job_id)
        took, delayed = pipe.execute()
        if took or delayed:
            self.forget([job_id])
        return bool(took or delayed)

    def waiting(self, job_id: str) -> Waiting | None:
        return self.parse_waiting(self.client.hget(keys.JOBS, job_id))

    def waiting_into(self, pipe: redis.client.Pipeline, job_id: str) -> None:
        """Queue ``waiting``'s read on ``pipe``; ``parse_waiting`` its result."""
        pipe.hget(keys.JOBS, job_id)

    @staticmethod
    def parse_waiting(raw: Any) -> Waiting | None:
        return Waiting.from_json(raw) if raw is not None else None

    def put_back(self, waiting: Waiting) -> None:
        """Return a taken job to its place (its rank is its priority and submission number)."""
        self.enqueue(waiting)

    def size(self, model: str | None = None) -> int:
        """Jobs waiting (for ``model``, or all), delayed ones not counted."""
        models = [model] if model is not None else self.models()
        pipe = self.client.pipeline(transaction=False)
        for m in models:
            for tenant in self.tenants(m):
                pipe.zcard(keys.backlog(m, tenant))
        return int(sum(pipe.execute()))

    def size_by_priority(self, model: str) -> dict[int, int]:
        """Jobs waiting for ``model`` per priority (the rank's band), delayed ones not counted."""
        bands = range(PRIORITY_MAX, -1, -1)
        tenants = self.tenants(model)
        pipe = self.client.pipeline(transaction=False)
        for tenant in tenants:
            for priority in bands:
                low = rank_score(priority, 0)
                pipe.zcount(keys.backlog(model, tenant), low, f"({low + _SEQ_SPAN:.0f}")
        counts = pipe.execute() if tenants else []
        out = dict.fromkeys(bands, 0)
        for i, count in enumerate(counts):
            out[PRIORITY_MAX - i % len(bands)] += int(count)
        return out

    def forget(self, job_ids: Iterable[str], pipe: redis.client.Pipeline | None = None) -> None:
        """Drop what is kept about jobs that have finished (their rank, their release payload),
        unless one is waiting again meanwhile (requeued from the dead letters, say): so a
        forget may come late. With ``pipe``, queued on it (the caller executes)."""
        target = pipe if pipe is not None else self.client.pipeline(transaction=False)
        for job_id in job_ids:
            run_script(
                self._forget,
                [keys.JOBS, keys.SEQ, keys.DELAYED],
                [job_id, keys.BACKLOG_PREFIX],
                target,
            )
        if pipe is None:
            target.execute()
