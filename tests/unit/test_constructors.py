"""Constructors start no threads and run no migrations: a client, the gateway's submit batcher
and the WAL checkpointer do that when they are opened or started, not when they are built."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect

from genq.settings import Settings
from genq.store import WalCheckpointer, build_engine
from producers.client import GenqClient
from producers.gateway.batcher import SubmitBatcher


def _tables(database: Path) -> set[str]:
    engine = create_engine(f"sqlite:///{database}")
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _threads() -> set[threading.Thread]:
    return set(threading.enumerate())


def test_building_a_client_touches_no_store_and_starts_no_thread(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:1/0")
    before = _threads()
    client = GenqClient(settings)
    assert _threads() == before
    assert not (tmp_path / "genq.db").exists()
    client.close()  # closing an unopened client is fine too
    assert not (tmp_path / "genq.db").exists()


@pytest.mark.parametrize("opening", ["open", "with", "first use"])
def test_a_client_migrates_when_opened_or_first_used(tmp_path: Path, opening: str) -> None:
    client = GenqClient(Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:1/0"))
    if opening == "open":
        assert client.open() is client
        client.open()  # again: nothing more happens
    elif opening == "with":
        with client:
            assert "jobs" in _tables(tmp_path / "genq.db")
    else:
        assert client.store.list(tenant=None).records == []
    assert {"jobs", "alembic_version"} <= _tables(tmp_path / "genq.db")
    client.close()


def _batcher(tmp_path: Path) -> SubmitBatcher:
    # Nothing is submitted here, so the celery app, store and gauge are never touched.
    unused: Any = object()
    return SubmitBatcher(unused, unused, Settings(data_dir=tmp_path), unused)


def test_building_the_submit_batcher_starts_no_thread(tmp_path: Path) -> None:
    before = _threads()
    batcher = _batcher(tmp_path)
    assert _threads() == before
    batcher.close()  # closing an unstarted batcher is fine too


def test_the_submit_batcher_runs_between_start_and_close(tmp_path: Path) -> None:
    batcher = _batcher(tmp_path)
    batcher.start()
    started = [t for t in threading.enumerate() if t.name == "genq-submit"]
    assert len(started) == 1 and started[0].is_alive()
    batcher.close()
    assert not started[0].is_alive()


def test_submitting_to_an_unstarted_batcher_says_so(tmp_path: Path) -> None:
    batcher = _batcher(tmp_path)
    unused: Any = object()
    with pytest.raises(RuntimeError, match="start"):
        asyncio.run(batcher.submit(unused))


def test_the_wal_checkpointer_runs_between_start_and_close(tmp_path: Path) -> None:
    engine = build_engine(f"sqlite:///{tmp_path / 'wal.db'}", wal_autocheckpoint=False)
    before = _threads()
    unstarted = WalCheckpointer(engine)
    assert _threads() == before
    unstarted.close()  # closing an unstarted checkpointer is fine too
    checkpointer = WalCheckpointer(engine, interval_seconds=0.01)
    checkpointer.start()
    [thread] = _threads() - before
    assert thread.name == "genq-wal-checkpoint" and thread.is_alive()
    checkpointer.close()
    assert not thread.is_alive()
    engine.dispose()
