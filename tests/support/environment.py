"""Environments for genq: as ``Settings`` in this process, or for a genq subprocess."""

from __future__ import annotations

import os
from collections.abc import Mapping

from genq.settings import Settings

PREFIX = "GENQ_"


def settings_from_env(env: Mapping[str, str | None]) -> Settings:
    """The ``Settings`` a genq process started with ``env`` would read from its ``GENQ_*``
    variables (other variables are ignored; ``None`` leaves a setting at its default)."""
    fields = {
        name.removeprefix(PREFIX).lower(): value
        for name, value in env.items()
        if name.startswith(PREFIX) and value is not None
    }
    return Settings(**fields)


def process_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any ``GENQ_*`` variable, with ``env`` laid over it:
    only what a test passes configures the subprocess."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    return {**inherited, **(env or {})}
