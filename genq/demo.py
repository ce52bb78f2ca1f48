"""The demonstration ``genq up --demo`` runs against the stack it started.

Each step prints what it did and returns whether its outcome was the expected one;
:func:`run_demo` is true only when every step was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from genq.settings import Settings

__all__ = ["DemoStep", "run_demo"]

Echo = Callable[[str], None]
JOB_TIMEOUT_SECONDS = 180.0
PRIORITIES = (1, 5, 9)


@dataclass(frozen=True)
class DemoStep:
    name: str
    ok: bool
    detail: str


def _priorities(settings: Settings, echo: Echo) -> DemoStep:
    """Jobs at several priorities: all succeed; the order they finished in is shown."""
    from producers.client import GenqClient

    with GenqClient(settings) as client:
        submitted = [
            client.submit(
                {
                    "kind": "completion",
                    "prompt": f"A short note about priority {priority}:",
                    "max_tokens": 16,
                    "priority": priority,
                }
            )
            for priority in PRIORITIES
        ]
        echo(f"  submitted {len(submitted)} jobs at priorities {', '.join(map(str, PRIORITIES))}")
        done = [client.wait(record.id, timeout=JOB_TIMEOUT_SECONDS) for record in submitted]
    for record in sorted(done, key=lambda r: r.finished_at or r.created_at):
        text = (record.result.text or "").strip().replace("\n", " ") if record.result else ""
        echo(f"  priority {record.priority}: {record.status.value} {text[:60]!r}")
    failed = [r for r in done if r.status.value != "succeeded"]
    detail = "all succeeded" if not failed else f"{len(failed)} did not succeed"
    return DemoStep("priorities", not failed, detail)


STEPS: list[Callable[[Settings, Echo], DemoStep]] = [_priorities]


def run_demo(settings: Settings, echo: Echo) -> bool:
    """Run every demonstration step; print a line per outcome; true when all were as expected."""
    echo("demo:")
    results = []
    for step in STEPS:
        result = step(settings, echo)
        results.append(result)
        echo(f"demo {result.name}: {'ok' if result.ok else 'FAILED'} ({result.detail})")
    return all(result.ok for result in results)
