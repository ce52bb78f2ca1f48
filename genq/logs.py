"""Structured logs: one JSON object per line (structlog), job context bound, secrets redacted.

Every record, from genq, Celery or a library, goes through the same processors:
- the job context bound with :func:`bind_job_context` (contextvars: per task, per thread);
- :func:`drop_content` removes prompts and outputs from records above DEBUG;
- :func:`redact_secrets` masks values under secret-looking keys and token-shaped strings.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

import structlog
from structlog.types import EventDict, Processor

from genq.settings import Settings, unknown_env_warnings

__all__ = [
    "REDACTED",
    "bind_job_context",
    "bind_task_context",
    "clear_job_context",
    "configure_logging",
    "drop_content",
    "json_worker_notices",
    "redact_secrets",
    "redact_text",
]

REDACTED = "[redacted]"

# Keys whose values are secrets whatever they look like. `key_id` names a key, it is not one.
_SECRET_KEY = re.compile(r"secret|key|passw|authorization|token|cookie|credential", re.I)
_PUBLIC_KEYS = frozenset({"key_id", "event", "logger", "level", "timestamp"})
_SECRET_TEXT = (
    (re.compile(r"whsec_[A-Za-z0-9+/=_-]{8,}"), REDACTED),
    (re.compile(r"\bgenq_[A-Za-z0-9_-]{16,}"), REDACTED),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/-]+=*"), f"Bearer {REDACTED}"),
    # Credentials in URLs: redis://:pw@host, postgresql://user:pw@host.
    (re.compile(r"(://[^:/@\s]*:)[^@\s/]+@"), rf"\g<1>{REDACTED}@"),
)
# Model input and output: never in a record above DEBUG.
CONTENT_KEYS = frozenset(
    {"prompt", "messages", "input", "output", "text", "delta", "content", "result", "request"}
)
_MAX_DEPTH = 6


def redact_text(text: str) -> str:
    """``text`` with webhook secrets, API keys, bearer tokens and URL passwords masked."""
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def _redact(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {
            k: REDACTED if _is_secret_key(k) else _redact(v, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v, depth + 1) for v in value]
    return value


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and key not in _PUBLIC_KEYS and bool(_SECRET_KEY.search(key))


def redact_secrets(_logger: object, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secret-named keys and token-shaped strings, nested too."""
    return {
        key: REDACTED if _is_secret_key(key) else _redact(value)
        for key, value in event_dict.items()
    }


def drop_content(_logger: object, method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: above DEBUG, replace prompt/output fields by their size."""
    level = str(event_dict.get("level", method)).lower()
    if level in ("debug", "notset"):
        return event_dict
    for key in CONTENT_KEYS & event_dict.keys():
        value = event_dict[key]
        event_dict[key] = f"[omitted: {len(str(value))} chars]"
    return event_dict


def bind_job_context(**values: object) -> None:
    """Bind job id, tenant, lane, attempt… to every log record of this task (or thread)."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in values.items() if v is not None})


def clear_job_context(**_: object) -> None:
    """Forget the bound job context (also usable as a Celery ``task_postrun`` receiver)."""
    structlog.contextvars.clear_contextvars()


def bind_task_context(
    task_id: str | None = None,
    task: Any = None,
    kwargs: Mapping[str, Any] | None = None,
    **_: object,
) -> None:
    """Celery ``task_prerun`` receiver: bind the task, its job (or delivery) id and lane."""
    clear_job_context()
    args = kwargs or {}
    delivery_info = getattr(getattr(task, "request", None), "delivery_info", None) or {}
    queue = str(delivery_info.get("routing_key") or "")
    bind_job_context(
        task=getattr(task, "name", None),
        task_id=task_id,
        job_id=args.get("job_id") if isinstance(args.get("job_id"), str) else None,
        delivery_id=args.get("delivery_id") if isinstance(args.get("delivery_id"), str) else None,
        queue=queue or None,
    )


def json_worker_notices() -> None:
    """Make the notices Celery's worker writes from its signal handlers JSON lines too.

    Celery bypasses logging there (``celery.apps.worker.safe_say``: a raw write, safe in a
    signal handler). This keeps the raw write and only changes what is written.
    """
    import celery.apps.worker as celery_worker

    def say(msg: str, f: TextIO | None = None) -> None:
        stream = f or sys.__stderr__ or sys.stderr
        record = {
            "event": redact_text(str(msg).strip()),
            "level": "warning",
            "logger": "celery.apps.worker",
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        with contextlib.suppress(OSError, ValueError):
            os.write(stream.fileno(), (json.dumps(record) + "\n").encode())

    celery_worker.safe_say = say


def _stdlib_message(_logger: object, _method: str, event_dict: EventDict) -> EventDict:
    # Records from `logging` arrive with their formatted message in `event`; keep it a string.
    event_dict["event"] = str(event_dict.get("event", ""))
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        _stdlib_message,
        drop_content,
        redact_secrets,
    ]


def configure_logging(settings: Settings) -> None:
    """Route stdlib logging and structlog through one handler on stderr; call at entry points.
    Then log each ``GENQ_*`` variable of the environment that is no setting (a typo)."""
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if settings.log_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    logging.captureWarnings(True)  # warnings become records: JSON like everything else
    # httpx logs every request line at INFO: a runtime call per token stream, and URLs may carry
    # credentials. Failures still surface as genq errors with their own messages.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    for message in unknown_env_warnings(os.environ):
        logging.getLogger("genq.settings").warning(message)
