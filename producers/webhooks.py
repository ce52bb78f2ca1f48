"""Webhooks from the producer's side: verifying what genq sends, and vetting a job's
``webhook_url`` before the job is accepted."""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError
from standardwebhooks.webhooks import EmptyWebhookSecretError

from genq.settings import Settings
from genq.webhooks.ssrf import check_webhook_url
from producers.submission import WebhookCheck
from schemas import InvalidRequest, Unauthorized

__all__ = ["InvalidSignature", "verify_webhook", "webhook_submit_check"]


class InvalidSignature(Unauthorized):
    """The webhook's signature, id or timestamp does not check out: do not act on it."""


def verify_webhook(
    headers: Mapping[str, str], body: bytes | str, secret: str | Sequence[str]
) -> dict[str, Any]:
    """Check a genq webhook's Standard Webhooks signature and return its parsed JSON payload.

    ``headers`` may use any case; ``body`` must be the raw request body, unparsed. ``secret`` is
    the endpoint's ``whsec_`` secret (or several, while you rotate). Raises ``InvalidSignature``
    for a forged, tampered, replayed-late or malformed delivery.
    """
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    plain = {key.lower(): value for key, value in headers.items()}
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets:
        raise InvalidRequest("verify_webhook needs the endpoint's whsec_ secret")
    for candidate in secrets:
        try:
            verifier = Webhook(candidate)
        except (EmptyWebhookSecretError, RuntimeError, ValueError) as exc:
            raise InvalidRequest("the webhook secret is not a valid whsec_ secret") from exc
        try:
            verifier.verify(text, plain, json_parse=False)
        except (WebhookVerificationError, ValueError, binascii.Error):
            continue
        return _payload(text)
    raise InvalidSignature(
        "webhook signature verification failed: the body, webhook-id or webhook-timestamp was "
        "altered, it is older than 5 minutes, or it was signed with another secret"
    )


def _payload(text: str) -> dict[str, Any]:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidSignature("the webhook body is not JSON") from exc
    if not isinstance(payload, dict):
        raise InvalidSignature("the webhook body is not a JSON object")
    return payload


def webhook_submit_check(settings: Settings) -> WebhookCheck:
    """The check ``submit_job`` runs on a job's webhook: some secret must sign it (the job's
    ``webhook_secret`` or ``GENQ_WEBHOOK_SECRET``) and the URL must pass the SSRF guard."""
    allow = list(settings.webhook_allow)
    has_default = settings.webhook_secret is not None

    def check(url: str, secret: str | None = None, /) -> None:
        if secret is None and not has_default:
            raise InvalidRequest(
                "a job with a webhook_url needs a webhook_secret (whsec_…) to sign its "
                "callbacks, because this deployment sets no GENQ_WEBHOOK_SECRET",
                details=[{"field": "webhook_secret", "message": "required with webhook_url"}],
            )
        check_webhook_url(url, allow)

    return check
