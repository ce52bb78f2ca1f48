"""Priority mapping: genq's 0-9 (9 most urgent) onto Redis' emulated steps (0 consumed first)."""

from __future__ import annotations

PRIORITY_MIN = 0
PRIORITY_MAX = 9
PRIORITY_DEFAULT = 5
PRIORITY_STEPS = list(range(PRIORITY_MIN, PRIORITY_MAX + 1))


def celery_priority(priority: int) -> int:
    """Map a genq priority to the Celery/kombu Redis priority step."""
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ValueError(f"priority must be {PRIORITY_MIN}-{PRIORITY_MAX}, got {priority}")
    return PRIORITY_MAX - priority
