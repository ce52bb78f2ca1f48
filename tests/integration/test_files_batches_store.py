"""The files and batches tables on both backends (SQLite and a real PostgreSQL): chunks round
trip, pages, the batch compare-and-sets, line counts and the Idempotency-Key constraint."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from genq.celery_app import create_app
from genq.settings import Settings
from genq.store import JobStore, build_engine, utcnow
from genq.store.batches import BatchStore, DuplicateKey
from genq.store.files import FileStore
from genq.store.jobs import NewJob
from genq.store.migrate import upgrade_database
from producers.gateway.batch_files import OutputFile
from producers.gateway.batches import BatchLifecycle
from schemas import JobRequest, JobStatus

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

CHAT = {"messages": [{"role": "user", "content": "x"}], "lane": "batch"}


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
    assert [r.status for r in records] == [JobStatus.QUEUED] * 3
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
    batch_id = _batch(batches, status="in_progress")
    new = [NewJob(str(uuid.uuid4()), "acme", "batch", "m", JobRequest.model_validate(CHAT))]
    new.append(NewJob(str(uuid.uuid4()), "acme", "batch", "m", JobRequest.model_validate(CHAT)))
    for record in batches.add_lines(batch_id, [(1, "one", new[0]), (2, "two", new[1])]):
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
