"""``/healthz`` (the process answers) and ``/readyz`` (broker, store and runtime reachable)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from genq import constants as c
from genq import rabbitmq
from producers.gateway.state import Gateway, gateway_of

router = APIRouter(tags=["health"])


class Check(BaseModel):
    ok: bool
    detail: str


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, Check]


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Alive: the process serves requests. Says nothing about its dependencies."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Something it needs is down."}},
)
async def readyz(request: Request) -> JSONResponse:
    """Ready: broker, store and runtime each answer (503 naming the ones that do not)."""
    gateway = gateway_of(request)
    broker, store, runtime = await asyncio.gather(
        _bounded(_broker(gateway)), _bounded(_store(gateway)), _bounded(_runtime(gateway))
    )
    checks = {"broker": broker, "store": store, "runtime": runtime}
    ready = all(check.ok for check in checks.values())
    body = Readiness(ready=ready, checks=checks).model_dump()
    return JSONResponse(body, status_code=200 if ready else 503)


async def _bounded(probe: Awaitable[Check]) -> Check:
    try:
        async with asyncio.timeout(c.RUNTIME_HEALTH_TIMEOUT_SECONDS + 1):
            return await probe
    except TimeoutError:
        return Check(ok=False, detail="no answer in time")


async def _broker(gateway: Gateway) -> Check:
    """Redis, and RabbitMQ when it is the broker (genq needs both then)."""
    amqp = gateway.settings.broker_is_amqp
    if amqp:
        url, timeout = gateway.settings.effective_broker_url, c.RUNTIME_HEALTH_TIMEOUT_SECONDS
        try:
            await run_in_threadpool(rabbitmq.ping, url, timeout)
        except Exception as exc:  # any failure means not ready; say which
            return Check(
                ok=False, detail=f"broker (rabbitmq) unreachable: {exc.__class__.__name__}"
            )
    try:
        await gateway.redis.ping()
    except Exception as exc:  # any failure means not ready; say which
        return Check(ok=False, detail=f"broker (redis) unreachable: {exc.__class__.__name__}")
    return Check(
        ok=True, detail="rabbitmq answers, redis answers PING" if amqp else "redis answers PING"
    )


async def _store(gateway: Gateway) -> Check:
    try:
        await gateway.call(gateway.store.ping)
    except Exception as exc:  # any failure means not ready; say which
        return Check(ok=False, detail=f"result store unreachable: {exc.__class__.__name__}")
    return Check(ok=True, detail=f"{gateway.store.engine.dialect.name} answers")


async def _runtime(gateway: Gateway) -> Check:
    if gateway.fleet.fleet.declared:
        return await run_in_threadpool(_fleet, gateway)
    health = await run_in_threadpool(gateway.runtime.health)
    return Check(ok=health.ok, detail=health.detail)


def _fleet(gateway: Gateway) -> Check:
    """A declared fleet is ready while some endpoint is out of cooldown; the detail gives each
    endpoint's state, requests in flight over slots, errors and time to first token."""
    rows = gateway.fleet.endpoints()
    parts = []
    for row in rows:
        ttft = f", ttft {row.ttft_ms:.0f} ms" if row.ttft_ms is not None else ""
        parts.append(
            f"{row.name}: {row.state}, {row.in_flight}/{row.slots} in flight, "
            f"{row.errors} errors{ttft}"
        )
    return Check(ok=any(row.state != "cooldown" for row in rows), detail="; ".join(parts))
