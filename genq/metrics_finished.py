"""Histograms and counters over finished jobs, read from the store at scrape time
(``genq.store.metrics``).

Each scrape reads the jobs that finished since the previous one and observes each exactly
once. The read reaches back ``OVERLAP`` before the newest finish it has seen, because a worker
stamps ``finished_at`` before its transaction commits: a job committed a little late is still
found, and the ids seen in that window keep it from being counted twice. The first scrape of a
process observes every finished job still in the store.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import Metric

from schemas import JobStatus

__all__ = ["FinishedJobs", "job_timings"]

OVERLAP = timedelta(minutes=5)

QUEUE_WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
FIRST_TOKEN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
DURATION_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
TOKENS_PER_SECOND_BUCKETS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def job_timings(row: dict[str, Any]) -> dict[str, float]:
    """The timings one finished job contributes (only those it has). Pure."""
    out: dict[str, float] = {}
    created, started = row["created_at"], row["started_at"]
    first, finished = row["first_token_at"], row["finished_at"]
    for name, value in (
        ("queue_wait", _seconds(created, started)),
        ("first_token", _seconds(started, first)),
        ("duration", _seconds(started, finished)),
    ):
        if value is not None:
            out[name] = value
    tokens = int((row["usage"] or {}).get("completion_tokens") or 0)
    if tokens:
        out["completion_tokens"] = float(tokens)
    generating = _seconds(first, finished)
    if row["status"] == JobStatus.SUCCEEDED.value and tokens > 1 and generating:
        # The first token's own latency is time to first token, not generation speed.
        out["tokens_per_second"] = (tokens - 1) / generating
    return out


class FinishedJobs:
    """Observes each finished job once; not thread-safe (the collector holds a lock)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, datetime], None] = {}
        self._newest: datetime | None = None
        self.finished = Counter(
            "genq_jobs_finished",
            "Jobs that reached a terminal state",
            ["lane", "status"],
            registry=None,
        )
        self.tokens = Counter(
            "genq_completion_tokens", "Completion tokens generated", ["lane"], registry=None
        )
        self.queue_wait = Histogram(
            "genq_job_queue_wait_seconds",
            "From submission to the start of the last attempt",
            ["lane"],
            buckets=QUEUE_WAIT_BUCKETS,
            registry=None,
        )
        self.first_token = Histogram(
            "genq_job_time_to_first_token_seconds",
            "From start to the first generated token",
            ["lane"],
            buckets=FIRST_TOKEN_BUCKETS,
            registry=None,
        )
        self.duration = Histogram(
            "genq_job_duration_seconds",
            "From start to the terminal state",
            ["lane", "kind"],
            buckets=DURATION_BUCKETS,
            registry=None,
        )
        self.speed = Histogram(
            "genq_completion_tokens_per_second",
            "Generation speed of succeeded jobs",
            ["lane"],
            buckets=TOKENS_PER_SECOND_BUCKETS,
            registry=None,
        )

    def since(self) -> datetime | None:
        """Where the next read of finished jobs starts (None: every finished job)."""
        return None if self._newest is None else self._newest - OVERLAP

    def collect(self) -> list[Metric]:
        """Every family, after the jobs read since the last call were observed."""
        self._forget_old()
        metrics: list[Metric] = []
        for metric in (
            self.finished,
            self.tokens,
            self.queue_wait,
            self.first_token,
            self.duration,
            self.speed,
        ):
            metrics.extend(metric.collect())
        return metrics

    def observe(self, row: dict[str, Any]) -> None:
        """Count one finished job's row, unless it was counted before."""
        key = (row["id"], row["finished_at"])
        if key in self._seen or row["status"] not in {s.value for s in JobStatus if s.terminal}:
            return
        self._seen[key] = None
        if self._newest is None or row["finished_at"] > self._newest:
            self._newest = row["finished_at"]
        lane = row["lane"]
        self.finished.labels(lane, row["status"]).inc()
        timings = job_timings(row)
        if "completion_tokens" in timings:
            self.tokens.labels(lane).inc(timings["completion_tokens"])
        if "queue_wait" in timings:
            self.queue_wait.labels(lane).observe(timings["queue_wait"])
        if "first_token" in timings:
            self.first_token.labels(lane).observe(timings["first_token"])
        if "duration" in timings:
            self.duration.labels(lane, row["kind"]).observe(timings["duration"])
        if "tokens_per_second" in timings:
            self.speed.labels(lane).observe(timings["tokens_per_second"])

    def _forget_old(self) -> None:
        if self._newest is None:
            return
        horizon = self._newest - OVERLAP
        self._seen = {key: None for key in self._seen if key[1] >= horizon}
