"""``genq stats``: the metrics ``/metrics`` serves, as tables in the terminal (rich)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from schemas import JobStatus
from schemas.priority import PRIORITY_MAX, PRIORITY_MIN

__all__ = ["Sample", "histogram_quantile", "stats_tables"]

Sample = tuple[str, dict[str, str], float]

HISTOGRAMS = {
    "genq_job_queue_wait_seconds": "queue wait (s)",
    "genq_job_time_to_first_token_seconds": "time to first token (s)",
    "genq_job_duration_seconds": "duration (s)",
    "genq_completion_tokens_per_second": "completion tokens/s",
}
RECORDED = {
    "genq_retries_recorded": "retries",
    "genq_lease_recoveries_recorded": "lease recoveries",
    "genq_dead_letters_recorded": "dead letters",
    "genq_webhook_deliveries": "webhook deliveries",
    "genq_webhook_attempts_recorded": "webhook attempts",
    "genq_completion_tokens_total": "completion tokens",
    "genq_broker_unacked_messages": "unacked broker messages",
}


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """Prometheus-style quantile from cumulative ``(upper_bound, count)`` buckets. Pure."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return math.nan
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the last finite bucket: its bound is all we know
            width = count - lower_count
            share = (rank - lower_count) / width if width else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


def _value(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.0f}" if value == int(value) else f"{value:.3g}"


def _depth_table(samples: list[Sample]) -> Table:
    priorities = [str(p) for p in range(PRIORITY_MAX, PRIORITY_MIN - 1, -1)]
    table = Table(
        "lane",
        *[f"p{p}" for p in priorities],
        "total",
        title="Queue depth (broker: released to workers)",
    )
    depth: dict[str, dict[str, float]] = defaultdict(dict)
    for name, labels, value in samples:
        if name == "genq_queue_depth":
            depth[labels["lane"]][labels["priority"]] = value
    for lane, by_priority in depth.items():
        cells = [_value(by_priority.get(p, 0.0)) for p in priorities]
        table.add_row(lane, *cells, _value(sum(by_priority.values())))
    for name, labels, value in samples:
        if name == "genq_queue_messages" and labels["queue"].rsplit(".", 1)[-1] not in depth:
            table.add_row(labels["queue"], *[""] * len(priorities), _value(value))
    return table


def _backlog_table(samples: list[Sample]) -> Table:
    """Jobs waiting for a runtime slot in genq's backlog (fleet dispatch: where queued jobs
    wait; the broker holds only those released to a worker)."""
    priorities = [str(p) for p in range(PRIORITY_MAX, PRIORITY_MIN - 1, -1)]
    title = "Waiting for a runtime slot (backlog)"
    table = Table("model", *[f"p{p}" for p in priorities], "total", title=title)
    depth: dict[str, dict[str, float]] = defaultdict(dict)
    for name, labels, value in samples:
        if name == "genq_fleet_waiting_by_priority":
            depth[labels["model"]][labels["priority"]] = value
    for model, by_priority in sorted(depth.items()):
        cells = [_value(by_priority.get(p, 0.0)) for p in priorities]
        table.add_row(model, *cells, _value(sum(by_priority.values())))
    return table


def _jobs_table(samples: list[Sample]) -> Table:
    statuses = [s.value for s in JobStatus]
    table = Table("lane", *statuses, title="Jobs in the store")
    counts: dict[str, dict[str, float]] = defaultdict(dict)
    for name, labels, value in samples:
        if name == "genq_jobs":
            counts[labels["lane"]][labels["status"]] = value
    for lane, by_status in sorted(counts.items()):
        table.add_row(lane, *[_value(by_status.get(s, 0.0)) for s in statuses])
    return table


@dataclass
class _Histogram:
    buckets: list[tuple[float, float]] = field(default_factory=list)
    count: float = 0.0
    total: float = 0.0


def _histograms(samples: list[Sample]) -> dict[tuple[str, str], _Histogram]:
    series: dict[tuple[str, str], _Histogram] = defaultdict(_Histogram)
    for name, labels, value in samples:
        base = next((b for b in HISTOGRAMS if name.startswith(b)), None)
        if base is None:
            continue
        label_text = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "le")
        entry = series[(HISTOGRAMS[base], label_text)]
        suffix = name[len(base) :]
        if suffix == "_bucket":
            entry.buckets.append((float(labels["le"]), value))
        elif suffix == "_count":
            entry.count = value
        elif suffix == "_sum":
            entry.total = value
    return series


def _timings_table(samples: list[Sample]) -> Table:
    table = Table("metric", "labels", "count", "mean", "p50", "p95", title="Finished jobs")
    for (title, label_text), entry in sorted(_histograms(samples).items()):
        table.add_row(
            title,
            label_text,
            _value(entry.count),
            _value(entry.total / entry.count if entry.count else math.nan),
            _value(histogram_quantile(0.5, entry.buckets)),
            _value(histogram_quantile(0.95, entry.buckets)),
        )
    return table


def _recorded_table(samples: list[Sample]) -> Table:
    table = Table("what", "labels", "value", title="Recorded")
    for name, labels, value in samples:
        if name in RECORDED or name == "genq_jobs_finished_total":
            title = RECORDED.get(name, "jobs finished")
            label_text = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
            table.add_row(title, label_text, _value(value))
    return table


def stats_tables(samples: Iterable[Sample]) -> list[Table]:
    """The tables ``genq stats`` prints, from metric samples."""
    rows = list(samples)
    return [
        _backlog_table(rows),
        _depth_table(rows),
        _jobs_table(rows),
        _timings_table(rows),
        _recorded_table(rows),
    ]


def print_stats(samples: Iterable[Sample], console: Console | None = None) -> None:
    """Print the tables, after a warning for each part (broker, store) that could not be read."""
    console = console or Console()
    rows = list(samples)
    for name, labels, value in rows:
        if name == "genq_component_up" and value == 0:
            console.print(
                f"[bold red]could not read the {labels['component']}[/]: its rows are missing"
            )
    for table in stats_tables(rows):
        console.print(table)
