"""When a silent stream reader asks the store again, and when it answers from the record.

The race it closes: a writer commits a job's terminal transition, then writes the stream's
``end`` entry; its ``finished_at`` was taken before it waited its turn to commit, so a reader
that trusted ``finished_at`` could end from the record (an ``end`` event without an id, after
the deltas the stream still had) moments before the real ``end`` arrived.
"""

from __future__ import annotations

from datetime import timedelta

from genq import constants as c
from genq.store import utcnow
from producers.gateway.streaming import Silence
from schemas import JobKind, JobRecord, JobStatus

RECHECK = c.GATEWAY_STORE_RECHECK_SECONDS


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(status: JobStatus, finished_seconds_ago: float | None = None) -> JobRecord:
    now = utcnow()
    return JobRecord(
        id="j1",
        status=status,
        kind=JobKind.COMPLETION,
        model="m",
        lane="interactive",
        priority=5,
        request={"prompt": "x"},
        created_at=now - timedelta(seconds=120),
        finished_at=None
        if finished_seconds_ago is None
        else now - timedelta(seconds=finished_seconds_ago),
    )


def test_the_store_is_asked_once_per_interval_of_silence() -> None:
    clock = Clock()
    silence = Silence(clock)
    clock.now += RECHECK - 0.1
    assert not silence.recheck_due()
    clock.now += 0.1
    assert silence.recheck_due()
    assert not silence.recheck_due()  # the silence counts again from that check
    clock.now += RECHECK - 1
    silence.heard()
    clock.now += RECHECK - 0.5
    assert not silence.recheck_due()  # a chunk heard meanwhile restarts the count


def test_a_running_job_is_never_given_up() -> None:
    clock = Clock()
    silence = Silence(clock)
    for _ in range(5):
        clock.now += RECHECK * 10
        assert not silence.gave_up(record(JobStatus.RUNNING))


def test_a_job_that_just_ended_gets_a_recheck_interval_to_close_its_stream() -> None:
    """``finished_at`` 10 s old (its writer waited that long to commit) is no reason to end
    from the record: the interval counts from when this reader first saw it terminal."""
    clock = Clock()
    silence = Silence(clock)
    ended = record(JobStatus.SUCCEEDED, finished_seconds_ago=10)
    assert not silence.gave_up(ended)
    clock.now += RECHECK - 0.1
    assert not silence.gave_up(ended)
    clock.now += 0.1
    assert silence.gave_up(ended)  # the writer died between commit and end: answer anyway


def test_a_job_that_ended_long_ago_is_answered_from_its_record_at_once() -> None:
    silence = Silence(Clock())
    gone = record(JobStatus.FAILED, finished_seconds_ago=c.GATEWAY_STREAM_GONE_SECONDS + 1)
    assert silence.gave_up(gone)
