"""Fair share between tenants: the Virtual Token Counter (VTC) of Sheng et al., 2024,
"Fairness in Serving Large Language Models".

Each tenant has, per pool (a model's slots), a virtual counter of the service it was given:
tokens, weighted by VTC's costs (a prompt token costs ``fair_prompt_token_cost``, a generated
one ``fair_output_token_cost``) and divided by the tenant's weight. Among tenants waiting at
the same (highest) priority, the one with the lowest counter starts next; priority still wins
over fairness. A tenant that becomes backlogged has its counter lifted to the backlogged
minimum, so time spent idle is not banked. A job is charged an estimate when it is dispatched
(its prompt and its ``max_tokens``) and the estimate is corrected with the real usage when the
attempt ends.

The decisions are plain functions (``choose``, ``lifted``); ``FairShare`` keeps the counters in
Redis, shared by every dispatcher, and applies a decision atomically (WATCH/MULTI on the pool's
keys, retried when another dispatcher wrote in between).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol

import redis

from genq import constants as c
from genq.settings import Settings
from schemas import JobKind, Usage

KEY_PREFIX = f"{c.REDIS_KEY_PREFIX}fair:"  # + pool: the counters; + pool:backlogged
COUNTER_PREFIX = "c:"
STATE_TTL_SECONDS = 86_400  # a pool nobody dispatched to for a day starts from zero
CHARS_PER_TOKEN = 4  # the usual estimate for English text and BPE tokenizers
WATCH_ATTEMPTS = 50


class Head(Protocol):
    """A tenant's first waiting job for a pool, in dispatch order (priority desc, then seq):
    what the choice sees of it (``genq.fleet.backlog.Head`` is one)."""

    @property
    def tenant(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def seq(self) -> int: ...  # submission order: lower went in first


def choose(heads: Sequence[Head], counters: Mapping[str, float]) -> int:
    """The index of the head that goes next: only heads at the highest priority compete;
    among them the lowest counter, then the earliest submitted."""
    if not heads:
        raise ValueError("no heads to choose from")
    top = max(h.priority for h in heads)
    competing = [i for i, h in enumerate(heads) if h.priority == top]
    return min(competing, key=lambda i: (counters.get(heads[i].tenant, 0.0), heads[i].seq))


def lifted(
    counters: Mapping[str, float], *, before: Collection[str], now: Collection[str]
) -> dict[str, float]:
    """VTC's rule for arrivals: each tenant in ``now`` (backlogged) but not in ``before`` (at
    the previous pick) has its counter raised to the minimum of those that stayed backlogged,
    or, if none stayed, of those that were (the last to leave, as VTC lifts to). Returns the
    new values of the tenants that changed."""
    arrivals = [t for t in now if t not in before]
    stayed = [t for t in now if t in before] or list(before)
    level = min((counters.get(t, 0.0) for t in stayed), default=0.0)
    return {t: level for t in arrivals if counters.get(t, 0.0) < level}


def cost(prompt_tokens: float, output_tokens: float, settings: Settings) -> float:
    """VTC's service cost of a request: weighted prompt and generated tokens."""
    return (
        prompt_tokens * settings.fair_prompt_token_cost
        + output_tokens * settings.fair_output_token_cost
    )


def estimate_cost(request: Mapping[str, Any], settings: Settings) -> float:
    """The cost charged at dispatch, from a job's stored request: its prompt's tokens (about
    one per ``CHARS_PER_TOKEN`` characters) and all it may generate (``max_tokens``, or the
    default for a chat or completion; nothing for embeddings)."""
    raw = request.get("prompt") or request.get("input") or ""
    texts = [str(t) for t in raw] if isinstance(raw, list) else [str(raw)]
    texts += [str(m.get("content") or "") for m in request.get("messages") or []]
    prompt = sum(math.ceil(len(t) / CHARS_PER_TOKEN) for t in texts)
    if request.get("kind") == JobKind.EMBEDDING.value:
        return cost(prompt, 0, settings)
    limit = request.get("max_tokens")
    output = limit if isinstance(limit, int) and limit > 0 else settings.default_max_tokens
    return cost(prompt, output, settings)


def usage_cost(usage: Usage | None, settings: Settings) -> float:
    """The real cost of an attempt from its usage; nothing served when it has none."""
    if usage is None:
        return 0.0
    return cost(usage.prompt_tokens, usage.completion_tokens, settings)


def pool_key(pool: str) -> str:
    return f"{KEY_PREFIX}{pool}"


def backlogged_key(pool: str) -> str:
    return f"{KEY_PREFIX}{pool}:backlogged"


class FairShare:
    """The VTC counters of every pool, in Redis. No I/O until a method is called."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.weights = settings.tenant_weights

    def weight(self, tenant: str) -> float:
        return self.weights.get(tenant, 1.0)

    def read(self, pool: str, pipe: redis.client.Pipeline) -> None:
        """Queue on ``pipe`` the two reads ``pick`` needs (its ``seen``: their results), so
        the dispatcher reads them in the round trip that reads the heads."""
        pipe.hgetall(pool_key(pool))
        pipe.smembers(backlogged_key(pool))

    def pick(self, pool: str, heads: Sequence[Head], seen: Sequence[Any] | None = None) -> int:
        """Choose which of ``heads`` (each backlogged tenant's first job for ``pool``) starts
        next. Tenants that were not backlogged at the previous pick are lifted first; all of
        it atomic across dispatchers. The chosen job is charged by ``charge`` once it is
        really taken (a dispatcher that loses the race for it charges nothing). ``seen``: the
        results of ``read``, if the caller read them already."""
        if not heads:
            raise ValueError("no heads to choose from")
        now = {h.tenant for h in heads}
        key, members = pool_key(pool), backlogged_key(pool)
        if seen is None:
            with self.client.pipeline(transaction=True) as pipe:
                self.read(pool, pipe)
                seen = pipe.execute()
        raw_counters, raw_before = seen
        # The usual case under load, the same tenants waiting as at the previous pick: nothing
        # to write. Otherwise lift the arrivals under WATCH.
        if {_text(m) for m in raw_before} == now:
            return choose(heads, _read(raw_counters))
        for _ in range(WATCH_ATTEMPTS):
            with self.client.pipeline() as pipe:
                try:
                    pipe.watch(key, members)  # type: ignore[no-untyped-call]
                    counters = _read(pipe.hgetall(key))
                    before = {_text(m) for m in pipe.smembers(members)}
                    if before == now:  # the usual case under load: nothing to write
                        return choose(heads, counters)
                    changed = lifted(counters, before=before, now=now)
                    counters |= changed
                    pipe.multi()
                    _write(pipe, key, members, changed, now)
                    pipe.execute()
                    return choose(heads, counters)
                except redis.WatchError:
                    continue
        raise RuntimeError(f"fair share of pool {pool!r}: too much contention")

    def charge(self, pool: str, tenant: str, estimate: float) -> None:
        """Charge a dispatched job's estimate to its tenant."""
        self._add(pool, tenant, estimate / self.weight(tenant))

    def charge_of(self, pool: str, tenant: str, estimate: float) -> tuple[str, str, float, int]:
        """What ``charge`` writes, for a caller that writes it in a script of its own
        (``SlotTable.claim``): key, field, amount and the key's TTL in seconds."""
        amount = estimate / self.weight(tenant)
        return pool_key(pool), COUNTER_PREFIX + tenant, amount, STATE_TTL_SECONDS

    def settle(
        self,
        pool: str,
        tenant: str,
        estimate: float,
        usage: Usage | None,
        pipe: redis.client.Pipeline | None = None,
    ) -> float:
        """Correct the estimate charged at dispatch with what the attempt really cost; returns
        the correction (in the tenant's virtual units). With ``pipe``, the write is queued on
        it (the caller executes)."""
        delta = (usage_cost(usage, self.settings) - estimate) / self.weight(tenant)
        self._add(pool, tenant, delta, pipe)
        return delta

    def _add(
        self, pool: str, tenant: str, amount: float, pipe: redis.client.Pipeline | None = None
    ) -> None:
        if not amount:
            return
        target = pipe if pipe is not None else self.client.pipeline(transaction=True)
        target.hincrbyfloat(pool_key(pool), COUNTER_PREFIX + tenant, amount)
        target.expire(pool_key(pool), STATE_TTL_SECONDS)
        if pipe is None:
            target.execute()

    def counters(self, pool: str) -> dict[str, float]:
        """Every tenant's counter on ``pool`` (for tests and the admin view)."""
        return _read(self.client.hgetall(pool_key(pool)))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _read(raw: Mapping[bytes | str, bytes | str]) -> dict[str, float]:
    counters: dict[str, float] = {}
    for name, value in raw.items():
        field = _text(name)
        if field.startswith(COUNTER_PREFIX):
            counters[field.removeprefix(COUNTER_PREFIX)] = float(value)
    return counters


def _write(
    pipe: redis.client.Pipeline,
    key: str,
    members: str,
    changed: Mapping[str, float],
    now: Collection[str],
) -> None:
    if changed:
        fields = {COUNTER_PREFIX + t: v for t, v in changed.items()}
        pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
    pipe.delete(members)
    pipe.sadd(members, *now)
    pipe.expire(key, STATE_TTL_SECONDS)
    pipe.expire(members, STATE_TTL_SECONDS)
