"""What both sides agree on about webhooks: Standard Webhooks signing and ``whsec_`` secrets
(:mod:`~genq.webhooks.signing`), and the SSRF policy that decides which receiver URLs are
allowed (:mod:`~genq.webhooks.ssrf`). Producers check a URL when it is given; workers check it
again, pinned, when they deliver (``workers.webhooks``)."""

from genq.webhooks.signing import generate_secret, is_valid_secret, sign_headers
from genq.webhooks.ssrf import WebhookUrlRefused, check_webhook_url, resolve_target

__all__ = [
    "WebhookUrlRefused",
    "check_webhook_url",
    "generate_secret",
    "is_valid_secret",
    "resolve_target",
    "sign_headers",
]
