"""The fleet's Redis key names (prefix ``genq:fleet:``), built in one place."""

from __future__ import annotations

PREFIX = "genq:fleet:"
JOBS = f"{PREFIX}jobs"  # HASH job id -> JSON of what releasing it needs (Waiting.to_json)
SEQ = f"{PREFIX}seq"  # HASH job id -> its submission sequence number (kept across retries)
SEQ_COUNTER = f"{PREFIX}seq:next"
WAITING = f"{PREFIX}waiting"  # SET of models with a backlog
DELAYED = f"{PREFIX}delayed"  # ZSET job id -> unix time it may be released (retry backoff)
SLOT_JOBS = f"{PREFIX}slotjob"  # HASH slot token -> job id (what a slot is held for)


BACKLOG_PREFIX = f"{PREFIX}backlog:"  # + model + ":" + tenant (the Lua scripts build it too)


def backlog(model: str, tenant: str) -> str:
    """ZSET job id -> rank score (priority descending, then submission order)."""
    return f"{BACKLOG_PREFIX}{model}:{tenant}"


def tenants(model: str) -> str:
    """SET of the tenants with a job waiting for ``model``."""
    return f"{PREFIX}tenants:{model}"


def slots(endpoint: str) -> str:
    """ZSET slot token -> lease expiry (unix ms): the endpoint's requests in flight."""
    return f"{PREFIX}slots:{endpoint}"


def endpoint_state(endpoint: str) -> str:
    """HASH: state (healthy | cooldown), until, failures, errors, requests, ttft_ms, ..."""
    return f"{PREFIX}ep:{endpoint}"


def discovered(endpoint: str) -> str:
    """STRING: JSON list of the models the endpoint listed (TTL'd)."""
    return f"{PREFIX}models:{endpoint}"


def loaded(endpoint: str) -> str:
    """STRING: JSON list of the models the endpoint has in memory (Ollama /api/ps; TTL'd)."""
    return f"{PREFIX}loaded:{endpoint}"


def affinity(session: str) -> str:
    """STRING: the endpoint that last ran work of this session/prefix key (TTL'd)."""
    return f"{PREFIX}affinity:{session}"


def probe_lock(endpoint: str) -> str:
    return f"{PREFIX}probe:{endpoint}"
