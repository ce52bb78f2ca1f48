"""A client of the OpenAI routes that hangs up before its answer is complete cancels its job.

Without an ``Idempotency-Key`` the job is cancelled at once: nobody can ask for it again. With
one, the hang-up may be the SDK giving up on an attempt it is about to retry with the same
key, so the job is cancelled only if no request is waiting on it ``openai_reattach_seconds``
later. Who waits is a Redis set per job (one token per request), so every gateway process
sees every waiter.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from functools import partial

import anyio

from genq import constants as c
from genq.redis_keys import openai_waiters_key
from producers.cancel import cancel_job
from producers.gateway.errors import redis_errors
from producers.gateway.state import Gateway
from schemas import GenqError

log = logging.getLogger(__name__)


async def wait_on(gateway: Gateway, job_id: str) -> str:
    """Record a request with an Idempotency-Key as waiting on ``job_id``; its token."""
    token = uuid.uuid4().hex
    key = openai_waiters_key(job_id)
    pipe = gateway.redis.pipeline(transaction=False)
    pipe.sadd(key, token)
    pipe.expire(key, c.OPENAI_WAITERS_TTL_SECONDS)
    with redis_errors("the waiting-requests record"):
        await pipe.execute()
    return token


async def done_waiting(gateway: Gateway, job_id: str, token: str | None) -> None:
    """The request holding ``token`` no longer waits (its answer was sent, or it left)."""
    if token is None:
        return
    try:
        with redis_errors("the waiting-requests record"):
            await gateway.redis.srem(openai_waiters_key(job_id), token)
    except GenqError as exc:  # the marker expires by itself
        log.warning("job %s: waiter not removed: %s", job_id, exc.message)


async def client_hung_up(gateway: Gateway, job_id: str, token: str | None) -> None:
    """Cancel the job of a client that left: at once without a token (no Idempotency-Key),
    else once the grace has passed with nobody waiting on it."""
    if token is None:
        await cancel_for_departed_client(gateway, job_id)
        return
    await done_waiting(gateway, job_id, token)
    task = asyncio.get_running_loop().create_task(_cancel_unless_back(gateway, job_id))
    gateway.hangups.add(task)
    task.add_done_callback(gateway.hangups.discard)


async def _cancel_unless_back(gateway: Gateway, job_id: str) -> None:
    await anyio.sleep(gateway.settings.openai_reattach_seconds)
    try:
        with redis_errors("the waiting-requests record"):
            waiting = await gateway.redis.scard(openai_waiters_key(job_id))
    except GenqError as exc:
        log.warning("job %s: not cancelled, waiters unknown: %s", job_id, exc.message)
        return
    if waiting:
        log.info("job %s kept: %d request(s) came back for it", job_id, waiting)
        return
    await cancel_for_departed_client(gateway, job_id)


async def cancel_for_departed_client(gateway: Gateway, job_id: str) -> None:
    """Cancel the job (a queued job never runs, a running one stops); shielded, since the
    request it belonged to is being torn down."""
    with anyio.CancelScope(shield=True):
        try:
            with redis_errors("the cancel flag store"):
                outcome = await gateway.call(
                    partial(cancel_job, tenant=None),
                    gateway.celery,
                    gateway.store,
                    gateway.sync_redis,
                    gateway.settings,
                    job_id,
                )
            log.info("client hung up: job %s %s", job_id, outcome.outcome)
        except GenqError as exc:
            log.warning("client hung up, job %s not cancelled: %s", job_id, exc.message)
