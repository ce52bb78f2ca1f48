"""The files and batches tables on both backends (SQLite and a real PostgreSQL): chunks round
trip, pages, the batch compare-and-sets, line counts, the Idempotency-Key constraint, and the
driver's validating step (resumed after a crash, stopped by a cancel)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from genq import constants as c
from genq.celery_app import create_app
from genq.settings import Settings
from genq.store import JobStore, build_engine, utcnow
from genq.store.batches import BatchStore, DuplicateKey
from genq.store.files import FileStore
from genq.store.jobs import NewJob
from genq.store.migrate import upgrade_database
from genq.store.retention import (
    BATCH_NOT_FINISHED,
    delete_finished_job,
    purge_batches_and_files,
    purge_expired,
)
from genq.store.tables import webhook_deliveries, webhook_events
from genq.store.webhook_endpoints import add_endpoint
from producers.gateway.batch_files import OutputFile
from producers.gateway.batch_requests import NewBatch
from producers.gateway.batches import BatchLifecycle
from schemas import Conflict, JobRequest, JobStatus

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

CHAT = {"messages": [{"role": "user", "content": "x"}], "lane": "batch"}
BODY = {"model": "m", "messages": CHAT["messages"]}  # a batch line's body


@pytest.fixture(params=["sqlite", "postgres"])
def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[FileStore, BatchStore]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("fresh_postgres_url")
    upgrade_database(url)
    engine = build_engine(url)
    yield FileStore(engine), BatchStore(engine)
    engine.dispose()


def test_a_file_round_trips_in_chunks_and_lines(stores: tuple[FileStore, BatchStore]) -> None:
    files, _ = stores
    pieces = [b'{"a": 1}\n{"b"', b": 2}\r\n", b"", b'{"c": 3}']
    stored = files.write("acme", "in.jsonl", "batch", pieces)
    assert (stored.bytes, stored.status, stored.purpose) == (
        sum(map(len, pieces)),
        "processed",
        "batch",
    )
    assert b"".join(files.chunks(stored.id)) == b"".join(pieces)
    assert list(files.lines(stored.id)) == [(1, b'{"a": 1}'), (2, b'{"b": 2}'), (3, b'{"c": 3}')]
    assert files.get(stored.id, "other") is None and files.get(stored.id, None) == stored
    assert not files.delete(stored.id, "other")
    assert files.delete(stored.id, "acme") and files.get(stored.id, "acme") is None
    assert list(files.chunks(stored.id)) == []


def test_file_pages_and_unfinished_uploads(stores: tuple[FileStore, BatchStore]) -> None:
    files, _ = stores
    made = [files.write("acme", f"{i}.jsonl", "batch", [b"x\n"]).id for i in range(3)]
    unfinished = files.begin("acme", "partial.jsonl", "batch")
    files.append(unfinished, 0, b"half")
    newest = [f.id for f in files.page("acme")]
    assert newest == made[::-1]  # the unfinished upload is not listed
    assert [f.id for f in files.page("acme", after=newest[0], limit=1)] == [newest[1]]
    assert [f.id for f in files.page("acme", newest_first=False)] == made
    assert files.purge_abandoned(60) == 0
    assert files.purge_abandoned(60, now=utcnow() + timedelta(seconds=120)) == 1
    assert list(files.chunks(unfinished)) == []


def _batch(batches: BatchStore, **values: Any) -> str:
    batch_id = f"batch_{uuid.uuid4().hex[:24]}"
    now = utcnow()
    batches.create(
        {
            "id": batch_id,
            "tenant": "acme",
            "status": "validating",
            "endpoint": "/v1/chat/completions",
            "input_file_id": "file-x",
            "completion_window": "24h",
            "priority": 2,
            "expires_at": now + timedelta(hours=24),
            **values,
        }
    )
    return batch_id


def test_batch_moves_are_compare_and_sets(stores: tuple[FileStore, BatchStore]) -> None:
    files, batches = stores
    batch_id = _batch(batches)
    moved = batches.move(batch_id, ["validating"], "in_progress")
    assert moved is not None and moved[0].in_progress_at is not None
    assert batches.move(batch_id, ["validating"], "in_progress") is None  # lost: not validating
    assert [b.id for b in batches.active()] == [batch_id]
    output = files.begin("acme", "out.jsonl", "batch_output")
    files.append(output, 0, b"{}\n")
    assert files.get(output, "acme") is None  # unfinished until the batch's final move
    done = batches.move(
        batch_id, ["in_progress"], "completed", values={"completed": 3}, files_done={output: 3}
    )
    assert done is not None and done[0].completed == 3 and done[0].completed_at is not None
    visible = files.get(output, "acme")
    assert visible is not None and visible.bytes == 3
    assert done[1] is None  # no endpoint of the tenant takes the event: none written
    assert batches.active() == [] and batches.get(batch_id, "other") is None


def test_lines_and_their_counts(stores: tuple[FileStore, BatchStore]) -> None:
    _, batches = stores
    batch_id = _batch(batches)
    jobs = JobStore(batches.engine)
    lines = [
        (
            n,
            f"c{n}",
            NewJob(str(uuid.uuid4()), "acme", "batch", "m", JobRequest.model_validate(CHAT)),
        )
        for n in (1, 2, 4)
    ]
    records = batches.add_lines(batch_id, lines)
    assert records is not None and [r.status for r in records] == [JobStatus.QUEUED] * 3
    assert batches.last_line(batch_id) == 4
    stored = batches.get(batch_id, "acme")
    assert stored is not None and stored.total == 3
    jobs.transition(records[0].id, JobStatus.CANCELLED)
    counts = batches.counts(batch_id)
    assert (counts.total, counts.completed, counts.failed, counts.open) == (3, 0, 1, 2)
    assert batches.flag_cancel(batch_id) == []  # none running
    assert all(jobs.get(r.id).cancel_requested for r in records[1:])  # type: ignore[union-attr]
    assert sorted(batches.open_jobs(batch_id, JobStatus.QUEUED, limit=10)) == sorted(
        r.id for r in records[1:]
    )
    page = batches.lines(batch_id, after_line=1, limit=1)
    assert [(line.line, line.custom_id) for line in page] == [(2, "c2")]
    assert page[0].record is not None and page[0].record.id == records[1].id


def test_an_idempotency_key_is_one_batch_per_tenant(stores: tuple[FileStore, BatchStore]) -> None:
    _, batches = stores
    first = _batch(batches, idempotency_key="k")
    _batch(batches, idempotency_key="k", tenant="other")  # another tenant's own key
    with pytest.raises(DuplicateKey):
        _batch(batches, idempotency_key="k")
    found = batches.by_idempotency_key("acme", "k")
    assert found is not None and found.id == first


def test_a_finalizer_that_dies_after_writing_leaves_one_answer_per_line(
    stores: tuple[FileStore, BatchStore], tmp_path: Path
) -> None:
    """The files a finalizer wrote before dying stay invisible; the next pass writes the batch's
    one set of files, each line answered once; the purge removes the dead one's."""
    files, batches = stores
    jobs = JobStore(batches.engine)
    settings = Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:9/0")
    lifecycle = BatchLifecycle(
        settings=settings,
        store=jobs,
        files=files,
        batches=batches,
        celery=create_app(settings),  # connects only to send, and nothing is sent here
        redis=redis.Redis.from_url(settings.redis_url),
    )
    batch_id = _batch(batches)
    new = [NewJob(str(uuid.uuid4()), "acme", "batch", "m", JobRequest.model_validate(CHAT))]
    new.append(NewJob(str(uuid.uuid4()), "acme", "batch", "m", JobRequest.model_validate(CHAT)))
    records = batches.add_lines(batch_id, [(1, "one", new[0]), (2, "two", new[1])])
    assert records is not None and batches.move(batch_id, ["validating"], "in_progress")
    for record in records:
        jobs.start(record.id, "w", lease_seconds=30)
        jobs.transition(record.id, JobStatus.SUCCEEDED, values={"result": {"text": "hi"}})
    # The first finalizer moved it to finalizing, wrote a file, and died before its final move.
    moved = batches.move(batch_id, ["in_progress"], "finalizing", values={"ends_as": "completed"})
    assert moved is not None
    dead = OutputFile(files, moved[0], "output")
    dead.write(b'{"custom_id": "one"}\n')
    assert dead.close() and files.get(str(dead.file_id), "acme") is None
    lifecycle.advance()  # the next pass finishes it
    again = batches.get(batch_id, "acme")
    assert again is not None and again.status == "completed" and again.error_file_id is None
    assert again.output_file_id is not None and again.output_file_id != dead.file_id
    answers = [json.loads(line) for _n, line in files.lines(again.output_file_id)]
    assert sorted(a["custom_id"] for a in answers) == ["one", "two"]
    assert [f.id for f in files.page("acme", purpose="batch_output")] == [again.output_file_id]
    assert files.purge_abandoned(60, now=utcnow() + timedelta(seconds=120)) == 1


def _lifecycle(
    files: FileStore, batches: BatchStore, tmp_path: Path, redis_url: str
) -> BatchLifecycle:
    settings = Settings(data_dir=tmp_path, redis_url=redis_url)
    return BatchLifecycle(
        settings=settings,
        store=JobStore(batches.engine),
        files=files,
        batches=batches,
        celery=create_app(settings),
        redis=redis.Redis.from_url(redis_url),
    )


def _validating(lifecycle: BatchLifecycle, custom_ids: list[str], blank_at: int = 3) -> str:
    lines = [
        json.dumps({"custom_id": cid, "url": "/v1/chat/completions", "body": BODY})
        for cid in custom_ids
    ]
    lines.insert(blank_at, "")  # a blank line: skipped, but it keeps its number
    source = lifecycle.files.write("acme", "in.jsonl", "batch", ["\n".join(lines).encode()])
    wanted = NewBatch(source.id, "/v1/chat/completions", "24h", None, 2)
    batch = lifecycle.create("acme", wanted)
    assert batch.status == "validating" and batch.total == 0  # nothing checked or queued yet
    return batch.id


def test_a_driver_that_dies_while_queuing_is_resumed_without_a_line_lost_or_twice(
    stores: tuple[FileStore, BatchStore],
    tmp_path: Path,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files, batches = stores
    lifecycle = _lifecycle(files, batches, tmp_path, redis_url)
    monkeypatch.setattr(c, "BATCH_LINES_PER_TRANSACTION", 2)
    ids = [f"c{n}" for n in range(7)]
    batch_id = _validating(lifecycle, ids)
    real_add = batches.add_lines
    calls = []

    def dies_on_the_third(batch: str, lines: Any) -> Any:
        calls.append(len(lines))
        if len(calls) == 3:
            raise KeyboardInterrupt  # the driver killed mid-transaction: nothing of it stored
        return real_add(batch, lines)

    monkeypatch.setattr(batches, "add_lines", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        lifecycle.advance()
    assert batches.last_line(batch_id) == 5  # lines 1-5 (4 is the blank one) stored
    monkeypatch.setattr(batches, "add_lines", real_add)
    with pytest.raises(Conflict):  # a driver overlapping it cannot store a line again
        real_add(batch_id, [(5, "c4", _new_job()), (6, "c5", _new_job())])
    assert lifecycle.advance() == 1
    batch = batches.get(batch_id, "acme")
    assert batch is not None and batch.status == "in_progress" and batch.total == 7
    stored = batches.lines(batch_id)
    assert [(line.line, line.custom_id) for line in stored] == [
        (n + (n > 3), cid) for n, cid in enumerate(ids, start=1)
    ]
    records = [line.record for line in stored]
    assert all(r is not None and r.status == JobStatus.QUEUED for r in records)
    assert batches.counts(batch_id).total == 7  # no job without its line, none twice


def test_a_batch_cancelled_while_validating_stops_queuing_and_runs_nothing(
    stores: tuple[FileStore, BatchStore],
    tmp_path: Path,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files, batches = stores
    lifecycle = _lifecycle(files, batches, tmp_path, redis_url)
    monkeypatch.setattr(c, "BATCH_LINES_PER_TRANSACTION", 2)
    batch_id = _validating(lifecycle, [f"c{n}" for n in range(6)])
    real_add = batches.add_lines

    def dies_on_the_second(batch: str, lines: Any) -> Any:
        if batches.last_line(batch_id):
            raise KeyboardInterrupt  # the driver killed after its first transaction
        return real_add(batch, lines)

    monkeypatch.setattr(batches, "add_lines", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        lifecycle.advance()
    monkeypatch.setattr(batches, "add_lines", real_add)
    assert batches.last_line(batch_id) == 2
    cancelled = lifecycle.cancel(batch_id, "acme")
    assert cancelled.status == "cancelled" and cancelled.cancelling_at is not None
    assert (cancelled.total, cancelled.completed, cancelled.failed) == (2, 0, 2)
    assert batches.add_lines(batch_id, [(3, "c2", _new_job())]) is None  # no longer validating
    assert lifecycle.advance() == 0 and batches.last_line(batch_id) == 2
    statuses = {line.record.status for line in batches.lines(batch_id) if line.record}
    assert statuses == {JobStatus.CANCELLED}


def test_a_bad_line_fails_the_batch_in_the_driver_and_queues_nothing(
    stores: tuple[FileStore, BatchStore], tmp_path: Path, redis_url: str
) -> None:
    files, batches = stores
    lifecycle = _lifecycle(files, batches, tmp_path, redis_url)
    batch_id = _validating(lifecycle, ["a", "b", "a"])
    assert lifecycle.advance() == 1
    failed = batches.get(batch_id, "acme")
    assert failed is not None and failed.status == "failed" and failed.failed_at is not None
    assert failed.errors is not None
    assert [(e["code"], e["line"]) for e in failed.errors] == [("duplicate_custom_id", 3)]
    assert batches.last_line(batch_id) == 0 and failed.total == 3


def _new_job() -> NewJob:
    return NewJob(str(uuid.uuid4()), "acme", "batch", "m", JobRequest.model_validate(CHAT))


def test_retention_keeps_line_jobs_with_their_batch_then_purges_them_together(
    stores: tuple[FileStore, BatchStore],
) -> None:
    """Line jobs outlive the job retention while their batch is kept (its output never reads
    ``job_missing``); a batch final for longer than the window goes with its lines, their
    jobs, its events and (no batch needing them) its files. An active batch and its input
    file are never touched."""
    files, batches = stores
    engine = batches.engine
    jobs = JobStore(engine)
    window = 3600
    later = utcnow() + timedelta(seconds=2 * window)
    add_endpoint(
        engine, tenant="acme", url="http://127.0.0.1:9/hook", secret="s", events=[], thin=False,
        now=utcnow(),
    )  # fmt: skip
    source = files.write("acme", "in.jsonl", "batch", [b"{}\n{}\n"])
    batch_id = _batch(batches, input_file_id=source.id)
    records = batches.add_lines(batch_id, [(1, "one", _new_job()), (2, "two", _new_job())])
    assert records is not None and batches.move(batch_id, ["validating"], "in_progress")
    jobs.start(records[0].id, "w", lease_seconds=30)
    jobs.transition(records[0].id, JobStatus.SUCCEEDED, values={"result": {"text": "hi"}})
    jobs.transition(records[1].id, JobStatus.CANCELLED)
    alone = jobs.create(_new_job())[0].id  # an ordinary job, under the job retention
    jobs.transition(alone, JobStatus.CANCELLED)
    other_source = files.write("acme", "other.jsonl", "batch", [b"{}\n"])
    active = _batch(batches, input_file_id=other_source.id)  # still validating, forever here

    def purge() -> tuple[int, int, int]:
        purged, _ = purge_expired(
            engine, now=later, finished_after_seconds=window, dead_letter_after_seconds=window
        )
        return (purged, *purge_batches_and_files(engine, now=later, finished_after_seconds=window))

    assert purge() == (1, 0, 0)  # the ordinary job only: the batch runs, its files are needed
    assert jobs.get(alone) is None
    assert all(line.record is not None for line in batches.lines(batch_id))
    output = files.begin("acme", "out.jsonl", "batch_output")
    files.append(output, 0, b"{}\n")
    done = batches.move(
        batch_id,
        ["in_progress"],
        "completed",
        values={"output_file_id": output},
        event=lambda b: {"id": b.id},
        files_done={output: 3},
    )
    assert done is not None and done[1] is not None  # its batch.completed event
    kept = purge_batches_and_files(engine, now=utcnow(), finished_after_seconds=window)
    assert kept == (0, 0)  # final, but not for longer than the window
    assert purge() == (0, 1, 2)  # the batch; its input and output files
    assert batches.get(batch_id, None) is None and batches.lines(batch_id) == []
    assert all(jobs.get(r.id) is None for r in records)
    assert files.get(source.id, None) is None and files.get(output, None) is None
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(webhook_events)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(webhook_deliveries)).scalar() == 0
    assert batches.get(active, None) is not None
    assert files.get(other_source.id, None) is not None


def test_a_line_job_is_deleted_only_once_its_batch_is_final(
    stores: tuple[FileStore, BatchStore],
) -> None:
    """Deleting a finished line's job while its batch runs would leave the batch's output
    without that line: it is a conflict with a stable code until the batch is final."""
    _, batches = stores
    engine = batches.engine
    jobs = JobStore(engine)
    batch_id = _batch(batches)
    records = batches.add_lines(batch_id, [(1, "one", _new_job()), (2, "two", _new_job())])
    assert records is not None and batches.move(batch_id, ["validating"], "in_progress")
    done = records[0].id
    jobs.start(done, "w", lease_seconds=30)
    jobs.transition(done, JobStatus.SUCCEEDED, values={"result": {"text": "hi"}})
    with pytest.raises(Conflict) as refused:
        delete_finished_job(engine, done, "acme")
    assert refused.value.details[0]["code"] == BATCH_NOT_FINISHED
    assert refused.value.details[0]["batch_id"] == batch_id
    assert jobs.get(done) is not None
    jobs.transition(records[1].id, JobStatus.CANCELLED)
    assert batches.move(batch_id, ["in_progress"], "completed") is not None
    assert delete_finished_job(engine, done, "acme") and jobs.get(done) is None


def test_a_pass_queues_for_its_budget_then_the_next_resumes(
    stores: tuple[FileStore, BatchStore],
    tmp_path: Path,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files, batches = stores
    lifecycle = _lifecycle(files, batches, tmp_path, redis_url)
    monkeypatch.setattr(c, "BATCH_LINES_PER_TRANSACTION", 2)
    monkeypatch.setattr(c, "BATCH_QUEUE_SECONDS_PER_PASS", 0.0)  # one transaction a pass
    first = _validating(lifecycle, ["a", "b", "c"])
    second = _validating(lifecycle, ["d", "e", "f"])
    lifecycle.advance()  # the oldest goes on; no time left for the other
    assert (batches.last_line(first), batches.last_line(second)) == (2, 0)
    lifecycle.advance()  # the oldest's last line (a transaction of one): it is in_progress
    assert (batches.last_line(first), batches.last_line(second)) == (3, 0)
    lifecycle.advance()
    lifecycle.advance()
    done = [batches.get(batch_id, "acme") for batch_id in (first, second)]
    assert [(b.status, b.total) for b in done if b] == [("in_progress", 3), ("in_progress", 3)]
