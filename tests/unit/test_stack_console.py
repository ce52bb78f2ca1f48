"""What `genq up` shows on its console of a component's output line, by default."""

from __future__ import annotations

import json

import pytest

from genq.cli.stack.console import console_line


def _json(level: str, event: str, **extra: object) -> str:
    return json.dumps({"event": event, "level": level, "logger": "x", **extra}) + "\n"


@pytest.mark.parametrize(
    ("name", "line", "shown"),
    [
        ("worker", _json("info", "celery@llm ready."), None),
        ("worker", _json("warning", "handed 1 job back"), "worker  | WARNING handed 1 job back"),
        ("gateway", _json("error", "boom\nmore detail"), "gateway | ERROR boom …"),
        (
            "ops",
            _json("error", "task failed", exception="Traceback…"),
            "ops     | ERROR task failed …",
        ),
        # Celery's warning about running as root, as a JSON record and as raw stderr lines.
        (
            "worker",
            _json(
                "warning", "SecurityWarning: You're running the worker with superuser privileges"
            ),
            None,
        ),
        ("beat", "You're running the worker with superuser privileges: this is\n", None),
        # What Celery and Flower say while the stack starts and stops together.
        ("worker", _json("warning", "worker: Cold shutdown (MainProcess)"), None),
        ("worker", _json("warning", "Initiating Soft Shutdown, terminating in 3.0 seconds"), None),
        (
            "ops",
            _json("warning", "worker: Hitting Ctrl+C again will terminate all running tasks!"),
            None,
        ),
        ("flower", _json("warning", "Inspect method stats failed"), None),
        (
            "flower",
            _json("error", "Inspect method stats failed: boom"),
            "flower  | ERROR Inspect method stats failed: boom",
        ),
        ("beat", "absolutely not recommended!\n", None),
        ("beat", "User information: uid=0 euid=0 gid=0 egid=0\n", None),
        # Plain lines: shown only when they say something failed.
        ("flower", "[I 250101 12:00:00 web:2271] 200 GET /healthcheck\n", None),
        ("gateway", "INFO:     Uvicorn running on http://127.0.0.1:8000\n", None),
        (
            "gateway",
            "ERROR:    [Errno 98] address already in use\n",
            "gateway | ERROR:    [Errno 98] address already in use",
        ),
        (
            "metrics",
            "Traceback (most recent call last):\n",
            "metrics | Traceback (most recent call last):",
        ),
        (
            "metrics",
            "OSError: [Errno 98] Address already in use\n",
            "metrics | OSError: [Errno 98] Address already in use",
        ),
        (
            "beat",
            "2025-01-01 [warning  ] slow sweep\n",
            "beat    | 2025-01-01 [warning  ] slow sweep",
        ),
        ("flower", "[W 250101 12:00:00 x:1] a tornado warning\n", None),
        ("worker", "\n", None),
        ("worker", "{not json\n", None),
        # The runtime's plain output (llama.cpp's loader dump, tracebacks) stays in its log…
        ("runtime", "llama_model_loader: - kv   0: general.architecture str = gemma3\n", None),
        ("runtime", "Traceback (most recent call last):\n", None),
        # …but genq's own lines from `genq runtime` are genq's: shown like any other.
        ("runtime", _json("error", "model file missing"), "runtime | ERROR model file missing"),
        (
            "runtime",
            '{"error": {"code": "model_not_found", "message": "install the model"}}\n',
            "runtime | ERROR model_not_found: install the model",
        ),
    ],
)
def test_console_line(name: str, line: str, shown: str | None) -> None:
    assert console_line(name, line) == shown
