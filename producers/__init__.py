"""Everything a submitter touches: the Python client, the HTTP gateway, the CLI commands."""

from producers.client import GenqClient, WaitTimeout
from producers.webhooks import verify_webhook

__all__ = ["GenqClient", "WaitTimeout", "verify_webhook"]
