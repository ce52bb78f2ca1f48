"""What an attempt tells the fleet when it comes back: the seam fair share (tokens charged per
tenant) and adaptive slots (what each request cost the endpoint) hang on. A job's estimate is
charged when it is released (``SlotTable.claim``); ``on_finished`` runs after every attempt
that held a slot (in the worker), must be cheap and must not raise.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from genq.fleet.adaptive import AdaptiveSlots, Sample
from genq.fleet.config import load_fleet
from genq.fleet.fairness import FairShare
from genq.settings import Settings
from schemas import Usage

__all__ = ["Finished", "on_finished"]

OVERLOADED = frozenset({429, 503})  # the runtime refused work: adaptive slots back off


@dataclass(frozen=True)
class Finished:
    """One attempt that held a slot on ``endpoint``, as it ended."""

    job_id: str
    tenant: str
    model: str
    endpoint: str
    estimate: float  # what was charged at dispatch (``Head.estimate``)
    usage: dict[str, int] | None  # the runtime's token counts, None if it gave none
    ttft_seconds: float | None
    duration_seconds: float
    status: int | None  # the runtime's HTTP status when it failed (429/503 mean overloaded)
    in_flight_at_start: int  # the endpoint's slot leases when this one was taken
    limit_at_start: int  # its slots then


def on_finished(
    client: redis.Redis,
    settings: Settings,
    finished: Finished,
    pipe: redis.client.Pipeline | None = None,
) -> None:
    """An attempt that held a slot ended (succeeded, failed or was cancelled): the estimate
    charged becomes what it really cost (queued on ``pipe`` when given), and an adaptive
    endpoint learns from it."""
    usage = Usage.model_validate(finished.usage) if finished.usage is not None else None
    FairShare(client, settings).settle(
        finished.model, finished.tenant, finished.estimate, usage, pipe
    )
    endpoint = load_fleet(settings).by_name(finished.endpoint)
    if endpoint is None or endpoint.slots != "auto":
        return
    slots = AdaptiveSlots(client, endpoint.name, settings.adaptive_max_slots)
    if finished.status in OVERLOADED:
        slots.overloaded()
    elif usage is not None:
        slots.record(
            Sample(
                limit=finished.limit_at_start,
                inflight=finished.in_flight_at_start + 1,  # the others, and this one
                ttft_seconds=finished.ttft_seconds,
                tokens=usage.completion_tokens,
                duration_seconds=finished.duration_seconds,
            )
        )
