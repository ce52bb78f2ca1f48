"""One webhook attempt: claim the delivery, sign it, POST it through the SSRF guard, log the
attempt and set the time of the next one in the store (the sweep sends it then).

Success is a 2xx within ``webhook_timeout_seconds``; a 3xx is a failure (redirects are never
followed); 410 disables the endpoint; 429/503 may postpone the next attempt with Retry-After.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from genq import constants as c
from genq.logs import redact_text
from genq.settings import Settings
from genq.store import Engine, utcnow
from genq.store.webhook_deliveries import (
    AttemptLog,
    Claim,
    DeliveryStatus,
    claim_delivery,
    finish_attempt,
)
from genq.webhooks.signing import active_secrets, sign_headers
from genq.webhooks.ssrf import (
    HostUnresolved,
    WebhookUrlRefused,
    pinned_transport,
    resolve_target,
)
from workers.webhooks.schedule import Verdict, classify, next_delay, retry_after_for

log = logging.getLogger(__name__)

EXCERPT_READ_BYTES = 4 * c.WEBHOOK_RESPONSE_EXCERPT_CHARS


@dataclass(frozen=True)
class Sent:
    """What the receiver did with one POST (or why it never saw it)."""

    log: AttemptLog
    retry_after: float | None = None


def render_body(payload: dict[str, Any], *, thin: bool) -> str:
    """The JSON body: ``{"type","timestamp","data"}``; a thin endpoint's data is id and status."""
    if thin:
        data = payload.get("data") or {}
        payload = {**payload, "data": {"id": data.get("id"), "status": data.get("status")}}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def signing_secrets(claim: Claim, settings: Settings, now: datetime) -> list[str]:
    """The target's secrets inside their rotation window, else the deployment default."""
    secrets = active_secrets(claim.secrets, now)
    if not secrets and settings.webhook_secret is not None:
        secrets = [settings.webhook_secret.get_secret_value()]
    return secrets


def post_event(
    url: str,
    event_id: str,
    body: str,
    secrets: list[str],
    *,
    allow: list[str],
    timeout_seconds: float,
) -> Sent:
    """POST one signed event to ``url``; never raises for anything the receiver does."""
    at = utcnow()
    started = time.perf_counter()
    try:
        target = resolve_target(url, allow)
    except (WebhookUrlRefused, HostUnresolved) as exc:
        return Sent(AttemptLog(at, None, _ms(started), error=f"not sent: {exc.message}"))
    headers = {
        **sign_headers(event_id, body, secrets, at),
        "content-type": "application/json",
        "user-agent": c.WEBHOOK_USER_AGENT,
    }
    # The transport itself, not a Client: it cannot follow a redirect, read proxy settings from
    # the environment, or log the URL (which may carry the receiver's own secret).
    request = httpx.Request(
        "POST",
        target.url,
        headers=headers,
        content=body.encode(),
        extensions={"timeout": httpx.Timeout(timeout_seconds).as_dict()},
    )
    try:
        with pinned_transport(target) as transport:
            response = transport.handle_request(request)
            try:
                answered_ms = _ms(started)
                excerpt = _excerpt(response, started + timeout_seconds)
            finally:
                response.close()
    except httpx.TimeoutException:
        error = f"no response within {timeout_seconds:g} s"
        return Sent(AttemptLog(at, None, _ms(started), error=error))
    except httpx.HTTPError as exc:
        error = redact_text(f"{type(exc).__name__}: {exc}")[:500]
        return Sent(AttemptLog(at, None, _ms(started), error=error))
    if answered_ms > timeout_seconds * 1000:
        error = f"no response within {timeout_seconds:g} s"
        return Sent(AttemptLog(at, None, answered_ms, error=error))
    code = response.status_code
    return Sent(
        AttemptLog(at, code, answered_ms, error=_error_for(code), response_excerpt=excerpt),
        retry_after=retry_after_for(code, response.headers.get("retry-after"), utcnow()),
    )


def _excerpt(response: httpx.Response, deadline: float) -> str | None:
    # Only the start of the body is kept, and a receiver trickling bytes cannot hold us.
    data = b""
    try:
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) >= EXCERPT_READ_BYTES or time.perf_counter() > deadline:
                break
    except httpx.HTTPError:
        pass  # the status line already decided the attempt; the excerpt is a courtesy
    text = data.decode("utf-8", errors="replace")[: c.WEBHOOK_RESPONSE_EXCERPT_CHARS]
    return text or None


def _error_for(code: int) -> str | None:
    if 200 <= code < 300:
        return None
    if 300 <= code < 400:
        return f"HTTP {code}: redirects are not followed; configure the final URL"
    return f"HTTP {code}"


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def settle_attempt(engine: Engine, settings: Settings, claim: Claim, sent: Sent) -> str:
    """Record the attempt and decide the delivery's state; returns that decision."""
    verdict = classify(sent.log.status_code)
    if verdict is Verdict.DELIVERED:
        finish_attempt(
            engine, claim, sent.log, status=DeliveryStatus.SUCCEEDED, next_attempt_at=None
        )
        return "delivered"
    if verdict is Verdict.GONE:
        finish_attempt(
            engine,
            claim,
            sent.log,
            status=DeliveryStatus.DISABLED,
            next_attempt_at=None,
            disable_reason="the receiver answered 410 Gone",
        )
        return "disabled"
    delay = next_delay(claim.attempt, settings.webhook_retry_schedule_seconds, sent.retry_after)
    if delay is None:
        finish_attempt(
            engine, claim, sent.log, status=DeliveryStatus.EXHAUSTED, next_attempt_at=None
        )
        return "exhausted"
    finish_attempt(
        engine,
        claim,
        sent.log,
        status=DeliveryStatus.PENDING,
        next_attempt_at=utcnow() + timedelta(seconds=delay),
    )
    return "retrying"


def deliver(engine: Engine, settings: Settings, delivery_id: str) -> str:
    """Make the next attempt of ``delivery_id`` if it is due and this caller wins its claim."""
    now = utcnow()
    lease = settings.webhook_timeout_seconds + c.WEBHOOK_CLAIM_MARGIN_SECONDS
    claim = claim_delivery(engine, delivery_id, now, lease)
    if claim is None:
        return "skipped"
    secrets = signing_secrets(claim, settings, now)
    if secrets:
        sent = post_event(
            claim.url,
            claim.event_id,
            render_body(claim.payload, thin=claim.thin),
            secrets,
            allow=settings.webhook_allow,
            timeout_seconds=settings.webhook_timeout_seconds,
        )
    else:
        error = (
            "not sent: no signing secret (give the job a webhook_secret or set GENQ_WEBHOOK_SECRET)"
        )
        sent = Sent(AttemptLog(now, None, 0.0, error=error))
    outcome = settle_attempt(engine, settings, claim, sent)
    log.info(
        "webhook %s (%s) attempt %d: %s → %s",
        claim.event_id,
        claim.event_type,
        claim.attempt,
        sent.log.status_code or sent.log.error,
        outcome,
    )
    return outcome
