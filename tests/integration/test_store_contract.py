"""The store's contract, run the same against SQLite and PostgreSQL (a cluster the tests start)."""

from __future__ import annotations

import itertools
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from genq.store import (
    Deliveries,
    JobStore,
    NewJob,
    StoreUnavailable,
    build_engine,
    dead_letters,
    utcnow,
)
from genq.store.api_keys import find_live_key, list_keys
from genq.store.dead_letters import DeadLetterRow
from genq.store.errors import StorePool
from genq.store.metrics import read_metrics
from genq.store.migrate import current_revision, upgrade_database
from genq.store.outbox import claim_replies
from genq.store.webhook_endpoints import add_endpoint, list_endpoints
from genq.store.webhook_log import list_deliveries
from schemas import Conflict, ErrorCode, ErrorInfo, InvalidRequest, JobRequest, JobStatus
from tests.support import free_port

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

CHAT = {"messages": [{"role": "user", "content": "x"}]}


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("fresh_postgres_url")
    upgrade_database(url)
    engine = build_engine(url)
    yield JobStore(engine)
    engine.dispose()


def _new(body: dict[str, object] | None = None, tenant: str = "t") -> NewJob:
    return NewJob(
        str(uuid.uuid4()), tenant, "interactive", "m", JobRequest.model_validate(body or CHAT)
    )


def test_create_get_and_tenant_scope(store: JobStore) -> None:
    record, created = store.create(_new())
    assert created and record.status is JobStatus.QUEUED
    assert store.get(record.id, "t") == record
    assert store.get(record.id, "other") is None


def test_status_alone_follows_the_record_and_its_tenant_scope(store: JobStore) -> None:
    record, _ = store.create(_new())
    assert store.status(record.id) is JobStatus.QUEUED
    assert store.status(record.id, "t") is JobStatus.QUEUED
    assert store.status(record.id, "other") is None
    assert store.status(str(uuid.uuid4())) is None
    assert store.start(record.id, "w/1", 30) is not None
    running = store.get(record.id, "t")
    assert running is not None and running.status is JobStatus.RUNNING
    assert store.status(record.id, "t") is JobStatus.RUNNING


def test_idempotency_replay_and_conflict(store: JobStore) -> None:
    first, created = store.create(_new({**CHAT, "idempotency_key": "k1"}))
    again, created_again = store.create(_new({**CHAT, "idempotency_key": "k1"}))
    assert created and not created_again and again.id == first.id
    with pytest.raises(Conflict):
        store.create(_new({**CHAT, "idempotency_key": "k1", "temperature": 1}))
    other_tenant, created_other = store.create(_new({**CHAT, "idempotency_key": "k1"}, "u"))
    assert created_other and other_tenant.id != first.id


def test_only_one_of_many_concurrent_starts_wins(store: JobStore) -> None:
    record, _ = store.create(_new())
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: store.start(record.id, f"w{i}/1", 30), range(16)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1 and winners[0].attempts == 1


def test_terminal_transition_happens_once_with_one_reply(store: JobStore) -> None:
    record, _ = store.create(_new({**CHAT, "reply_to": "replies"}))
    store.start(record.id, "w/1", 30)
    with ThreadPoolExecutor(4) as pool:
        done = list(
            pool.map(
                lambda _: store.transition(record.id, JobStatus.SUCCEEDED, only_worker="w/1"),
                range(8),
            )
        )
    assert sum(d is not None for d in done) == 1
    assert len(claim_replies(store.engine, utcnow(), claim_seconds=30, job_id=record.id)) == 1
    history = store.get(record.id, history=True).history or []  # type: ignore[union-attr]
    assert [h.to_status for h in history] == [
        JobStatus.QUEUED,
        JobStatus.RUNNING,
        JobStatus.SUCCEEDED,
    ]


def test_cursor_pagination_newest_first(store: JobStore) -> None:
    ids = [store.create(_new())[0].id for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        page = store.list(tenant="t", limit=2, cursor=cursor)
        seen += [r.id for r in page.records]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == list(reversed(ids))
    with pytest.raises(InvalidRequest):
        store.list(tenant="t", cursor="not-a-cursor!")


def test_batch_create(store: JobStore) -> None:
    records = store.create_many([_new() for _ in range(50)])
    assert len(records) == 50
    assert store.count_queued("t") == 50


def _history_is_a_chain(store: JobStore, job_id: str) -> list[tuple[str | None, str]]:
    record = store.get(job_id, history=True)
    assert record is not None and record.history is not None
    return [(h.from_status and h.from_status.value, h.to_status.value) for h in record.history]


def test_each_move_writes_one_history_row_saying_who_and_why(store: JobStore) -> None:
    """The history row of a start, of a move with one possible source and of one with several
    (on PostgreSQL each written by the statement that moves the job)."""
    record, _ = store.create(_new())
    assert store.start(record.id, "w/1", 30) is not None
    assert store.transition(record.id, JobStatus.SUCCEEDED, worker="w/1", reason="done",
                            only_worker="w/1") is not None  # fmt: skip
    other, _ = store.create(_new())
    assert store.transition(other.id, JobStatus.CANCELLED, worker="op", reason="by hand")
    assert store.start(other.id, "w/1", 30) is None  # lost: no history row either
    rows = {}
    for job_id in (record.id, other.id):
        got = store.get(job_id, history=True)
        assert got is not None and got.history is not None
        rows[job_id] = [
            (h.from_status and h.from_status.value, h.to_status.value, h.worker, h.reason)
            for h in got.history
        ]
    assert rows[record.id] == [
        (None, "queued", None, "submitted"),
        ("queued", "running", "w/1", "started"),
        ("running", "succeeded", "w/1", "done"),
    ]
    assert rows[other.id] == [
        (None, "queued", None, "submitted"),
        ("queued", "cancelled", "op", "by hand"),
    ]


def test_from_status_is_right_under_concurrent_writers(store: JobStore) -> None:
    """A transition allowed from several states records the state it actually left, while
    other writers move the job under it (PostgreSQL READ COMMITTED: a read before the update
    can see a state the update no longer finds)."""
    records = store.create_many([_new() for _ in range(60)])
    barrier_parties = 3

    def race(job_id: str) -> None:
        barrier = threading.Barrier(barrier_parties)

        def start() -> None:
            barrier.wait()
            store.start(job_id, "w/1", 30)

        def fail() -> None:
            barrier.wait()
            store.transition(job_id, JobStatus.FAILED, worker="x", reason="failed")

        def cancel() -> None:
            barrier.wait()
            store.transition(job_id, JobStatus.CANCELLED, worker="y", reason="cancelled")

        with ThreadPoolExecutor(barrier_parties) as pool:
            for future in [pool.submit(f) for f in (start, fail, cancel)]:
                future.result()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(race, [r.id for r in records]))
    for record in records:
        chain = _history_is_a_chain(store, record.id)
        for before, after in itertools.pairwise(chain):
            assert after[0] == before[1], f"{record.id}: {chain}"


def _letter(job_id: str, reason: str = "retries_exhausted") -> DeadLetterRow:
    error = ErrorInfo(code=ErrorCode.RETRIES_EXHAUSTED, message="gave up")
    return DeadLetterRow(str(uuid.uuid4()), job_id, reason, error, None, utcnow())


def test_a_terminal_transition_returns_what_it_wrote_to_the_outbox(store: JobStore) -> None:
    plain, _ = store.create(_new())
    replying, _ = store.create(_new({**CHAT, "reply_to": "replies"}))
    hooked, _ = store.create(_new({**CHAT, "webhook_url": "https://example.com/hook"}))
    for record in (plain, replying, hooked):
        store.start(record.id, "w/1", 30)
    done = [
        store.transition(r.id, JobStatus.SUCCEEDED, only_worker="w/1")
        for r in (plain, replying, hooked)
    ]
    assert [d.deliveries if d else None for d in done] == [
        Deliveries(),
        Deliveries(reply=True),
        Deliveries(webhooks=1),
    ]
    assert all(d is not None and d.record.status is JobStatus.SUCCEEDED for d in done)
    requeue = store.transition(plain.id, JobStatus.QUEUED)  # not from succeeded: lost
    assert requeue is None


def test_retry_is_only_the_holders_and_sets_a_dispatch_by_time(store: JobStore) -> None:
    record, _ = store.create(_new())
    store.start(record.id, "w/1", 30)
    error = ErrorInfo(code=ErrorCode.RUNTIME_UNAVAILABLE, message="503", retryable=True)
    assert (
        store.retry(record.id, worker="w/2", error=error, delay_seconds=2, lease_seconds=30) is None
    )
    before = utcnow()
    retried = store.retry(record.id, worker="w/1", error=error, delay_seconds=2, lease_seconds=30)
    assert retried is not None and retried.status is JobStatus.QUEUED and retried.error == error
    row = store.routing(record.id)
    assert row is not None and row["worker_id"] is None and row["lease_expires_at"] is None
    assert row["dispatch_by"] >= before + timedelta(seconds=32)
    history = store.get(record.id, history=True).history or []  # type: ignore[union-attr]
    assert history[-1].from_status is JobStatus.RUNNING
    assert (history[-1].reason or "").startswith("retry in 2.0s after runtime_unavailable")


def test_a_lapsed_lease_is_recovered_once_and_not_after_a_renewal(store: JobStore) -> None:
    lapsing, _ = store.create(_new())
    renewed, _ = store.create(_new())
    store.start(lapsing.id, "w/1", 0.01)
    store.start(renewed.id, "w/2", 0.01)
    later = utcnow() + timedelta(seconds=5)
    leases = {lease.job_id: lease for lease in store.lapsed_leases(later)}
    assert set(leases) == {lapsing.id, renewed.id}
    assert leases[lapsing.id].worker_id == "w/1" and leases[lapsing.id].crashes == 0
    assert store.renew_lease(renewed.id, "w/2", 60)
    dispatch_by = later + timedelta(seconds=15)
    # Renewed since the sweep read it: its lease is no longer lapsed at the sweep's time.
    assert store.recover_lapsed(leases[renewed.id], worker="sweep", dispatch_by=dispatch_by) is None
    recovered = store.recover_lapsed(leases[lapsing.id], worker="sweep", dispatch_by=dispatch_by)
    assert recovered is not None and recovered.status is JobStatus.QUEUED
    row = store.routing(lapsing.id)
    assert row is not None and row["crashes"] == 1 and row["dispatch_by"] == dispatch_by
    assert row["worker_id"] is None and row["lease_expires_at"] is None
    assert store.recover_lapsed(leases[lapsing.id], worker="sweep", dispatch_by=later) is None


def test_dead_letter_commits_its_row_with_the_transition(store: JobStore) -> None:
    record, _ = store.create(_new({**CHAT, "reply_to": "replies"}))
    store.start(record.id, "w/1", 30)
    assert store.dead_letter(_letter(record.id), worker="w/2", holder="w/2") is None
    assert dead_letters.find_open(store.engine, record.id) is None
    letter = _letter(record.id)
    moved = store.dead_letter(letter, worker="w/1", holder="w/1")
    assert moved is not None and moved.record.status is JobStatus.DEAD_LETTERED
    assert moved.deliveries == Deliveries(reply=True)
    found = dead_letters.find_open(store.engine, record.id)
    assert found is not None and found.id == letter.id and found.attempts == 1
    assert store.dead_letter(_letter(record.id), worker="w/1") is None  # once


def test_a_crash_looping_job_is_dead_lettered_only_while_its_lease_is_lapsed(
    store: JobStore,
) -> None:
    record, _ = store.create(_new())
    store.start(record.id, "w/1", 0.01)
    [lease] = store.lapsed_leases(utcnow() + timedelta(seconds=5))
    store.renew_lease(record.id, "w/1", 60)
    assert store.dead_letter(_letter(record.id, "worker_crashed"), worker="s", lapsed=lease) is None
    [lease] = store.lapsed_leases(utcnow() + timedelta(seconds=120))
    moved = store.dead_letter(_letter(record.id, "worker_crashed"), worker="s", lapsed=lease)
    assert moved is not None and store.routing(record.id)["crashes"] == 1  # type: ignore[index]


def test_requeue_from_the_dead_letter_queue_closes_the_letter(store: JobStore) -> None:
    record, _ = store.create(_new())
    store.start(record.id, "w/1", 30)
    assert store.requeue_dead_lettered(record.id, operator="op") is None  # not dead-lettered
    store.dead_letter(_letter(record.id), worker="w/1", holder="w/1")
    requeued = store.requeue_dead_lettered(record.id, operator="op")
    assert requeued is not None and requeued.status is JobStatus.QUEUED
    assert requeued.attempts == 0 and requeued.error is None and requeued.finished_at is None
    assert dead_letters.find_open(store.engine, record.id) is None
    assert dead_letters.list_open(store.engine) == []
    assert store.routing(record.id)["dispatch_by"] is not None  # type: ignore[index]
    assert store.requeue_dead_lettered(record.id, operator="op") is None


def test_hand_back_requeues_only_the_stopping_nodes_jobs(store: JobStore) -> None:
    workers = ["a_1@h/1", "a_1@h/2", "a_1@hb/1", "ax1@h/1", "b@h/1"]  # '_' is no wildcard
    records = store.create_many([_new() for _ in workers])
    for record, worker in zip(records, workers, strict=True):
        store.start(record.id, worker, 30)
    dispatch_by = utcnow() + timedelta(seconds=15)
    handed = store.hand_back("a_1@h", dispatch_by=dispatch_by)
    assert sorted(r.id for r in handed) == sorted(r.id for r in records[:2])
    assert all(r.status is JobStatus.QUEUED for r in handed)
    others = [store.get(r.id) for r in records[2:]]
    assert [r.status for r in others if r] == [JobStatus.RUNNING] * 3
    assert store.hand_back("a_1@h", dispatch_by=dispatch_by) == []


def test_a_stale_dispatch_is_claimed_by_one_sweep(store: JobStore) -> None:
    record, _ = store.create(_new())
    store.start(store.create(_new())[0].id, "w/1", 30)  # running jobs are never stale
    assert store.stale_dispatches(utcnow()) == []
    later = utcnow() + store.redispatch_after + timedelta(seconds=1)
    [stale] = store.stale_dispatches(later)
    assert stale.job_id == record.id and stale.lane == "interactive" and stale.tenant == "t"
    until = later + timedelta(minutes=1)
    assert store.claim_redispatch(stale, until)
    assert not store.claim_redispatch(stale, until)  # the time it saw moved on
    assert store.stale_dispatches(later) == []


def test_overdue_queued_jobs_and_the_other_reads(store: JobStore) -> None:
    overdue, _ = store.create(_new({**CHAT, "expires_in": 1, "idempotency_key": "k"}))
    store.create(_new())
    assert store.overdue_queued(utcnow() + timedelta(seconds=5)) == [overdue.id]
    assert store.idempotency_key_used("t", "k") and not store.idempotency_key_used("u", "k")
    assert store.count_finished([overdue.id]) == 0
    store.transition(overdue.id, JobStatus.EXPIRED)
    assert store.count_finished([overdue.id]) == 1
    store.ping()


def test_reads_complete_while_a_writer_holds_the_store(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Health probes, metrics scrapes, DLQ and key listings never queue behind a writer (on
    SQLite: they never take the writer lock; one taken would time out here)."""
    monkeypatch.setattr("genq.store.sqlite_writer_lock.WRITER_LOCK_TIMEOUT_SECONDS", 1.0)
    record, _ = store.create(_new({**CHAT, "idempotency_key": "k"}))
    engine = store.engine
    reads: list[Callable[[], object]] = [
        store.ping,
        lambda: store.get(record.id, history=True),
        lambda: store.list(tenant="t"),
        lambda: store.count_queued("t"),
        lambda: store.routing(record.id),
        lambda: store.idempotency_key_used("t", "k"),
        lambda: store.count_finished([record.id]),
        lambda: store.lapsed_leases(utcnow()),
        lambda: store.stale_dispatches(utcnow()),
        lambda: store.overdue_queued(utcnow()),
        lambda: dead_letters.list_open(engine),
        lambda: dead_letters.find_open(engine, record.id),
        lambda: read_metrics(engine, finished_since=None, observe=lambda _row: None),
        lambda: list_keys(engine),
        lambda: find_live_key(engine, "0" * 64),
        lambda: list_endpoints(engine),
        lambda: list_deliveries(engine),
        lambda: current_revision(engine.url.render_as_string(hide_password=False)),
    ]
    with engine.begin() as writer, ThreadPoolExecutor(4) as pool:
        writer.execute(text("UPDATE jobs SET priority = priority"))
        futures = [pool.submit(read) for read in reads]
        for future in futures:
            future.result(timeout=10)


@pytest.fixture(params=["sqlite", "postgres"])
def unreachable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    """A store whose database cannot be reached: a SQLite file whose directory was deleted
    after the engine was built, or a PostgreSQL port nothing listens on."""
    if request.param == "sqlite":
        engine = build_engine(f"sqlite:///{tmp_path / 'gone' / 'store.db'}")
        shutil.rmtree(tmp_path / "gone")
    else:
        engine = build_engine(f"postgresql+psycopg://genq:hunter2@127.0.0.1:{free_port()}/genq")
    yield JobStore(engine)
    engine.dispose()


def test_no_free_connection_is_the_stores_own_retryable_error(store: JobStore) -> None:
    """A pool with every connection in use past its timeout: SQLAlchemy raises that at the
    pool, where its ``handle_error`` hook never sees it; the store's pool turns it into
    ``StoreUnavailable`` too."""
    assert isinstance(store.engine.pool, StorePool)
    # It logs as SQLAlchemy's pool (quiet), not under genq's loggers (INFO in every process).
    assert getattr(store.engine.pool.logger, "name", "").startswith("sqlalchemy.pool.")
    small = create_engine(
        store.engine.url, poolclass=StorePool, pool_size=1, max_overflow=0, pool_timeout=0.2
    )
    try:
        crowded = JobStore(small)
        # The only connection held, then a read that needs one.
        with small.connect(), pytest.raises(StoreUnavailable) as failed:
            crowded.get(str(uuid.uuid4()))
        assert failed.value.retryable and failed.value.code is ErrorCode.INTERNAL
        assert failed.value.__cause__ is not None
        assert crowded.get(str(uuid.uuid4())) is None  # free again: it answers
    finally:
        small.dispose()


def test_a_database_it_cannot_reach_is_the_stores_own_retryable_error(
    unreachable: JobStore,
) -> None:
    """Callers catch ``StoreUnavailable`` and never a SQLAlchemy error (none of them imports
    SQLAlchemy), for reads and writes alike; the database's error stays chained for the logs."""
    engine = unreachable.engine
    operations: list[Callable[[], object]] = [
        unreachable.ping,
        lambda: unreachable.get(str(uuid.uuid4())),
        lambda: unreachable.create(_new()),
        lambda: unreachable.create_many([_new()]),
        lambda: unreachable.start(str(uuid.uuid4()), "w/1", 30),
        lambda: find_live_key(engine, "0" * 64),
        lambda: read_metrics(engine, finished_since=None, observe=lambda _row: None),
        lambda: add_endpoint(
            engine,
            tenant="t",
            url="https://x.test/",
            secret="s",
            events=[],
            thin=False,
            now=utcnow(),
        ),
    ]
    for operation in operations:
        with pytest.raises(StoreUnavailable) as failed:
            operation()
        assert failed.value.retryable and failed.value.code is ErrorCode.INTERNAL
        assert failed.value.__cause__ is not None  # what the database said, for the logs
        assert "hunter2" not in str(failed.value)
