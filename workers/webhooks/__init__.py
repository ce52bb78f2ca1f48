"""Webhook delivery: one attempt, its schedule and its record. Signing and the SSRF policy it
applies are shared with the producers (``genq.webhooks``)."""

from workers.webhooks.delivery import deliver, post_event, render_body

__all__ = ["deliver", "post_event", "render_body"]
