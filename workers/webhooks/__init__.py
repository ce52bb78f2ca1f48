"""Webhook delivery: Standard Webhooks signing, the SSRF guard, one attempt and its schedule."""

from workers.webhooks.delivery import deliver, post_event, render_body
from workers.webhooks.signing import generate_secret, is_valid_secret, sign_headers
from workers.webhooks.ssrf import WebhookUrlRefused, check_webhook_url, resolve_target

__all__ = [
    "WebhookUrlRefused",
    "check_webhook_url",
    "deliver",
    "generate_secret",
    "is_valid_secret",
    "post_event",
    "render_body",
    "resolve_target",
    "sign_headers",
]
