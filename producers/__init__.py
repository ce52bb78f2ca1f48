"""Everything a submitter touches: the Python client, the HTTP gateway, the CLI commands."""

from producers.client import GenqClient, WaitTimeout

__all__ = ["GenqClient", "WaitTimeout"]
