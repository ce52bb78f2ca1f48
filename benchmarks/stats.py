"""Small helpers shared by the benchmarks: percentiles, process memory and CPU."""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from pathlib import Path


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of one process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) ``pid`` has used so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class CpuMeter:
    """CPU seconds spent by named groups of processes between ``start()`` and ``stop()``."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.spent: dict[str, float] = dict.fromkeys(groups, 0.0)
        self._at_start: dict[int, float] = {}

    def _sample(self) -> dict[int, float]:
        sample = {}
        for pids in self.groups.values():
            for pid in pids():
                try:
                    sample[pid] = cpu_seconds(pid)
                except OSError:
                    continue
        return sample

    def start(self) -> None:
        self._at_start = self._sample()

    def stop(self) -> None:
        now = self._sample()
        for name, pids in self.groups.items():
            self.spent[name] += sum(
                now[pid] - self._at_start.get(pid, 0.0) for pid in pids() if pid in now
            )
