"""Pure parts of the metrics: Redis priority list names, job timings, histogram quantiles."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from genq.cli.stats import histogram_quantile, stats_tables
from genq.metrics import priority_list_key
from genq.metrics_finished import job_timings


@pytest.mark.parametrize(
    ("priority", "key"),
    [
        (9, "genq.interactive"),  # kombu step 0 is the bare queue name
        (8, "genq.interactive:1"),
        (5, "genq.interactive:4"),
        (0, "genq.interactive:9"),
    ],
)
def test_priority_list_key(priority: int, key: str) -> None:
    assert priority_list_key("genq.interactive", priority) == key


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _row(**values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "status": "succeeded",
        "usage": {"completion_tokens": 11},
        "created_at": T0,
        "started_at": T0 + timedelta(seconds=2),
        "first_token_at": T0 + timedelta(seconds=2.5),
        "finished_at": T0 + timedelta(seconds=4.5),
    }
    row.update(values)
    return row


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            _row(),
            {
                "queue_wait": 2.0,
                "first_token": 0.5,
                "duration": 2.5,
                "completion_tokens": 11.0,
                "tokens_per_second": 5.0,  # 10 tokens after the first, over 2 s
            },
        ),
        # Cancelled while queued: never started, nothing but its existence to count.
        (
            _row(status="cancelled", started_at=None, first_token_at=None, usage=None),
            {},
        ),
        # Failed after streaming: timings, but no generation speed.
        (
            _row(status="failed"),
            {"queue_wait": 2.0, "first_token": 0.5, "duration": 2.5, "completion_tokens": 11.0},
        ),
        # An embedding has no first token.
        (
            _row(first_token_at=None, usage={"prompt_tokens": 3}),
            {"queue_wait": 2.0, "duration": 2.5},
        ),
    ],
)
def test_job_timings(row: dict[str, Any], expected: dict[str, float]) -> None:
    assert job_timings(row) == pytest.approx(expected)


BUCKETS = [(1.0, 2.0), (2.0, 6.0), (5.0, 10.0), (math.inf, 10.0)]


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, BUCKETS, 1.75),  # rank 5 is 3/4 of the way through (1, 2]
        (0.1, BUCKETS, 0.5),
        (1.0, BUCKETS, 5.0),
        (0.99, [(1.0, 0.0), (math.inf, 4.0)], 1.0),  # beyond the last finite bucket
        (0.5, [(1.0, 0.0), (math.inf, 0.0)], math.nan),
        (0.5, [], math.nan),
    ],
)
def test_histogram_quantile(q: float, buckets: list[tuple[float, float]], expected: float) -> None:
    got = histogram_quantile(q, buckets)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


def test_stats_tables_show_depth_jobs_and_timings() -> None:
    samples = [
        ("genq_queue_depth", {"lane": "batch", "priority": "7"}, 3.0),
        ("genq_queue_depth", {"lane": "batch", "priority": "0"}, 1.0),
        ("genq_queue_messages", {"queue": "genq.batch"}, 4.0),
        ("genq_queue_messages", {"queue": "genq.dead_letter"}, 2.0),
        ("genq_jobs", {"lane": "batch", "status": "succeeded"}, 5.0),
        ("genq_job_duration_seconds_bucket", {"lane": "batch", "kind": "chat", "le": "1.0"}, 1.0),
        ("genq_job_duration_seconds_bucket", {"lane": "batch", "kind": "chat", "le": "+Inf"}, 2.0),
        ("genq_job_duration_seconds_count", {"lane": "batch", "kind": "chat"}, 2.0),
        ("genq_job_duration_seconds_sum", {"lane": "batch", "kind": "chat"}, 3.0),
        ("genq_retries_recorded", {}, 4.0),
        ("genq_fleet_waiting_by_priority", {"model": "m", "priority": "9"}, 6.0),
        ("genq_fleet_waiting_by_priority", {"model": "m", "priority": "2"}, 5.0),
    ]
    backlog, depth, jobs, timings, recorded = stats_tables(samples)
    assert backlog.row_count == 1
    backlog_cells = [cell for column in backlog.columns for cell in column._cells]
    assert backlog_cells[0] == "m" and backlog_cells[1] == "6" and backlog_cells[-1] == "11"
    assert depth.row_count == 2  # the batch lane and the dead-letter queue
    assert jobs.row_count == 1
    assert timings.row_count == 1
    assert recorded.row_count == 1
    depth_cells = [cell for column in depth.columns for cell in column._cells]
    assert "3" in depth_cells and "4" in depth_cells
