"""The fleet as operators see it: each endpoint's models, slots, requests in flight, state,
errors and time to first token, read from Redis (what the dispatchers and workers write).
``genq runtimes``, ``GET /v1/admin/runtimes``, ``/readyz`` and the metrics show it; the gateway
asks it which models there are (``GET /v1/models``, the check at submit)."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import redis

from genq import constants as c
from genq.fleet import keys
from genq.fleet.backlog import Backlog
from genq.fleet.config import Endpoint, Fleet, load_fleet, model_matches
from genq.fleet.health import HealthBook
from genq.fleet.slots import SlotTable, slots_for
from genq.runtime_health import list_models
from genq.settings import Settings

__all__ = ["DISCOVERY_TTL_SECONDS", "EndpointStatus", "FleetStatus", "discover", "read_discovered"]

log = logging.getLogger(__name__)

DISCOVERY_TTL_SECONDS = 30  # an endpoint's model list is asked again after this


def read_discovered(client: redis.Redis, fleet: Fleet) -> dict[str, list[str]]:
    """The last model list of each endpoint that discovers its models."""
    names = [e.name for e in fleet.endpoints if e.discovers]
    if not names:
        return {}
    raws = client.mget([keys.discovered(n) for n in names])
    return {n: json.loads(r) for n, r in zip(names, raws, strict=True) if r is not None}


def discover(client: redis.Redis, endpoint: Endpoint, http: httpx.Client) -> list[str] | None:
    """Ask ``endpoint`` for its models and keep the list in Redis; None if it did not answer."""
    try:
        names = list_models(endpoint.protocol, http)
    except Exception as exc:  # any failure keeps the last list
        log.info("model list of %s unavailable: %s", endpoint.name, exc)
        return None
    client.set(keys.discovered(endpoint.name), json.dumps(names), ex=DISCOVERY_TTL_SECONDS * 4)
    return names


@dataclass(frozen=True)
class EndpointStatus:
    """One row of ``genq runtimes``."""

    name: str
    kind: str
    url: str
    models: list[str]
    slots: int
    in_flight: int
    state: str
    errors: int
    requests: int
    ttft_ms: float | None
    last_error: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class FleetStatus:
    """A read view of the fleet; asks runtimes for their models only when nothing discovered
    them yet. Thread-safe; no I/O until used."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.settings = settings
        self.client = client
        self.slots = SlotTable(client, settings.fleet_slot_lease_seconds)
        self.health = HealthBook(
            client,
            failures=settings.fleet_breaker_failures,
            cooldown_seconds=settings.fleet_breaker_cooldown_seconds,
        )
        self.backlog = Backlog(client)
        self._asked: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def fleet(self) -> Fleet:
        return load_fleet(self.settings)

    def discovered(self, *, ask: bool = True) -> dict[str, list[str]]:
        """The endpoints' discovered model lists; with ``ask``, ones nobody discovered yet are
        asked now (at most every few seconds each, with a short timeout)."""
        fleet = self.fleet
        found = read_discovered(self.client, fleet)
        for endpoint in fleet.endpoints if ask else ():
            if not endpoint.discovers or endpoint.name in found:
                continue
            with self._lock:
                if time.monotonic() - self._asked.get(endpoint.name, -1e9) < 5.0:
                    continue
                self._asked[endpoint.name] = time.monotonic()
            with httpx.Client(
                base_url=endpoint.url or "", timeout=c.RUNTIME_HEALTH_TIMEOUT_SECONDS
            ) as http:
                names = discover(self.client, endpoint, http)
            if names is not None:
                found[endpoint.name] = names
        return found

    def model_names(self) -> list[str]:
        return self.fleet.model_names(self.discovered())

    def serves(self, model: str) -> bool:
        fleet = self.fleet
        discovered = self.discovered()
        return any(model_matches(model, fleet.models_of(e, discovered)) for e in fleet.endpoints)

    def endpoints(self, *, ask: bool = True) -> list[EndpointStatus]:
        """Each endpoint's row (``ask``: see ``discovered``)."""
        fleet = self.fleet
        discovered = self.discovered(ask=ask)
        names = [e.name for e in fleet.endpoints]
        in_flight = self.slots.in_flight(names)
        states = self.health.states(names)
        rows = []
        for endpoint in fleet.endpoints:
            state = states[endpoint.name]
            rows.append(
                EndpointStatus(
                    name=endpoint.name,
                    kind=endpoint.kind,
                    url=endpoint.url or "",
                    models=fleet.models_of(endpoint, discovered),
                    slots=slots_for(self.client, endpoint),
                    in_flight=in_flight[endpoint.name],
                    state=state.state,
                    errors=state.errors,
                    requests=state.requests,
                    ttft_ms=state.ttft_ms,
                    last_error=state.last_error,
                )
            )
        return rows

    def waiting(self) -> dict[str, int]:
        """Jobs waiting in the backlog, per model."""
        return {model: self.backlog.size(model) for model in self.backlog.models()}

    def waiting_by_priority(self) -> dict[str, dict[int, int]]:
        """Jobs waiting in the backlog, per model and priority."""
        return {model: self.backlog.size_by_priority(model) for model in self.backlog.models()}
