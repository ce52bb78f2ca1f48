"""The library versions whose internals genq's adaptations mirror (this package's and
``workers.internals``'), and a check against the installed ones. Widen a range only after
reading the new release's source of what each module adapts (see both package docstrings)."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version

__all__ = ["MIRRORED_VERSIONS", "installed_version", "unmirrored_versions"]

# distribution -> (lowest mirrored (major, minor), first (major, minor) not mirrored)
MIRRORED_VERSIONS: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    # genq/internals/transport.py: Channel._create_client; workers/internals/transport.py:
    # Channel._brpop_read, QoS
    "kombu": ((5, 6), (5, 8)),
    # workers/internals/consumer.py: Consumer's event buffer and "cannot run" hooks
    "celery": ((5, 6), (5, 8)),
    # workers/internals/deferred.py: Connection.pack_commands, can_read, read_response
    "redis": ((5, 0), (9, 0)),
}


def installed_version(distribution: str) -> tuple[int, int] | None:
    """The installed ``(major, minor)`` of ``distribution``, or None if it is not installed."""
    try:
        text = version(distribution)
    except PackageNotFoundError:
        return None
    match = re.match(r"(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2])) if match else None


def unmirrored_versions() -> list[str]:
    """One line per installed library outside the range its adaptation mirrors."""
    problems = []
    for distribution, (lowest, beyond) in MIRRORED_VERSIONS.items():
        found = installed_version(distribution)
        if found is None or not lowest <= found < beyond:
            shown = "not installed" if found is None else f"{found[0]}.{found[1]}"
            problems.append(
                f"{distribution} {shown} is outside {lowest[0]}.{lowest[1]} to below "
                f"{beyond[0]}.{beyond[1]}, the versions whose internals genq's adaptations mirror"
            )
    return problems
