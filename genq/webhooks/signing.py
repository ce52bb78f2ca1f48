"""Standard Webhooks signing (``standardwebhooks``), ``whsec_`` secrets and their rotation.

A secret list is stored as ``[{"secret": "whsec_…", "expires_at": iso | None}]``, newest
first. A rotated-out secret keeps its place until ``expires_at``, and every secret still inside
its window signs each message, so receivers can switch secrets without a gap.
"""

from __future__ import annotations

import base64
import binascii
import secrets as random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from standardwebhooks import Webhook

from genq import constants as c

SecretEntry = dict[str, Any]


def generate_secret() -> str:
    """A new random ``whsec_`` secret (24 bytes, base64)."""
    raw = random.token_bytes(c.WEBHOOK_SECRET_BYTES)
    return c.WEBHOOK_SECRET_PREFIX + base64.b64encode(raw).decode()


def is_valid_secret(secret: str) -> bool:
    """True for ``whsec_`` followed by base64 of at least 16 bytes."""
    if not secret.startswith(c.WEBHOOK_SECRET_PREFIX):
        return False
    body = secret[len(c.WEBHOOK_SECRET_PREFIX) :]
    try:
        return len(base64.b64decode(body, validate=True)) >= 16
    except (binascii.Error, ValueError):
        return False


def _expiry(entry: SecretEntry) -> datetime | None:
    value = entry.get("expires_at")
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def active_secrets(entries: Sequence[SecretEntry], now: datetime) -> list[str]:
    """The secrets that sign a message sent at ``now`` (newest first)."""
    active = []
    for entry in entries:
        expires = _expiry(entry)
        if expires is None or expires > now:
            active.append(str(entry["secret"]))
    return active


def rotate(
    entries: Sequence[SecretEntry], new_secret: str, now: datetime, overlap_seconds: float
) -> list[SecretEntry]:
    """``entries`` with ``new_secret`` in front; the old ones sign on for ``overlap_seconds``."""
    until = now + timedelta(seconds=overlap_seconds)
    kept: list[SecretEntry] = [{"secret": new_secret, "expires_at": None}]
    for entry in entries:
        expires = _expiry(entry)
        if expires is not None and expires <= now:
            continue  # already out of its window: drop it for good
        end = until if expires is None else min(expires, until)
        if end > now:
            kept.append({"secret": entry["secret"], "expires_at": end.isoformat()})
    return kept


def sign_headers(event_id: str, body: str, secrets: Sequence[str], at: datetime) -> dict[str, str]:
    """The ``webhook-id``/``-timestamp``/``-signature`` headers of ``body`` sent at ``at``."""
    if not secrets:
        raise ValueError("a webhook needs at least one signing secret")
    at = at.astimezone(UTC)  # the library reads the wall clock as UTC
    signatures = [Webhook(secret).sign(event_id, at, body) for secret in secrets]
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(signatures),
    }
