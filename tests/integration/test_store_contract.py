"""The store's contract, run the same against SQLite and PostgreSQL (a cluster the tests start)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from genq.migrate import upgrade_database
from genq.store import JobStore, NewJob, build_engine, utcnow
from genq.store.outbox import claim_replies
from schemas import Conflict, InvalidRequest, JobRequest, JobStatus

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
