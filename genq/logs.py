"""Logging set-up for entry points (structured JSON by default)."""

from __future__ import annotations

import logging
import sys

from genq.settings import Settings


def configure_logging(settings: Settings) -> None:
    """Configure the root logger once, at an entry point."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
