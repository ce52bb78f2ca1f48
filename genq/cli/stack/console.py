"""What ``genq up`` shows of its components' output by default. Pure functions.

Every line a component writes goes to its log file; the console gets only the warnings and
errors worth a person's attention. genq's own processes log JSON lines with a ``level`` (and a
`genq` command that fails prints ``{"error": {...}}``); other lines (a library writing to
stderr, a traceback) are shown when they look like an error. The embedded runtime's plain
output (llama.cpp's model-loader dump, a line per request, its tracebacks) is never shown:
when it fails, the supervisor says so and names its log file.
"""

from __future__ import annotations

import json
import re

__all__ = ["NAME_WIDTH", "console_line", "prefixed"]

NAME_WIDTH = 8
QUIET_COMPONENTS = frozenset({"runtime"})
SHOWN_LEVELS = frozenset({"warning", "error", "critical", "exception", "fatal"})
# Shown in full in the log file, never on the console: a warning the user cannot act on.
NOISE = (
    # Celery warns at every start when it runs as root (a container, a VM): the local stack
    # accepts only JSON, which is what the warning is about.
    re.compile(r"running the worker with superuser privileges", re.I),
    re.compile(r"^(absolutely not recommended!|Please specify a different user|User information:)"),
    # Celery's notices while genq up stops it (the supervisor says it is stopping).
    re.compile(
        r"Hitting Ctrl\+C again will terminate|^worker: (Cold|Warm|Soft) shutdown"
        r"|^Initiating Soft Shutdown"
    ),
    # Flower asking workers that are not up yet (they start together); its page shows them.
    re.compile(r"^Inspect method \w+ failed$"),
)
# A plain line that says something failed: `Traceback (...)`, `ValueError: …`, `[error ] …`,
# `ERROR:uvicorn.error: …`, `WARNING  …`.
LOOKS_LIKE_TROUBLE = re.compile(
    r"^Traceback |^[\w.]*(Error|Exception|Warning): |\[(warning|error|critical)\s*\]"
    r"|^(WARNING|ERROR|CRITICAL)[: ]|\b(WARNING|ERROR|CRITICAL)/"
)


def prefixed(name: str, text: str) -> str:
    """``text`` as the console shows a component's line: ``name    | text``."""
    return f"{name:<{NAME_WIDTH}}| {text}"


def console_line(name: str, line: str) -> str | None:
    """What the console shows of ``line`` from component ``name`` by default, or None."""
    text = line.rstrip()
    if not text.strip() or _is_noise(text):
        return None
    record = _json_record(text)
    if record is None:
        if name in QUIET_COMPONENTS or not LOOKS_LIKE_TROUBLE.search(text):
            return None
        return prefixed(name, text)
    error = record.get("error")
    if isinstance(error, dict):  # a `genq` command's own failure: {"error": {code, message}}
        return prefixed(name, f"ERROR {error.get('code', 'error')}: {error.get('message', '')}")
    level = str(record.get("level", "")).lower()
    event = str(record.get("event", ""))
    if level not in SHOWN_LEVELS or _is_noise(event):
        return None
    first, _, rest = event.partition("\n")
    more = " …" if rest.strip() or "exception" in record else ""
    return prefixed(name, f"{level.upper()} {first}{more}")


def _is_noise(text: str) -> bool:
    return any(pattern.search(text) for pattern in NOISE)


def _json_record(text: str) -> dict[str, object] | None:
    if not text.startswith("{"):
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None
