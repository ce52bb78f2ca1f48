"""The gateway's SQLite engine checkpoints its WAL from a background thread, never in a commit."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, insert, text

from genq.store import WalCheckpointer, build_engine
from tests.support import eventually

pytestmark = pytest.mark.integration

ROUNDS = 40
ROW = "x" * 2000


def _write_rounds(db: Path, checkpointer_interval: float | None) -> int:
    """Write ROUNDS transactions of ~200 KB each; the WAL file's largest size, in bytes."""
    engine = build_engine(f"sqlite:///{db}", wal_autocheckpoint=False)
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("v", Text))
    table.metadata.create_all(engine)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 0
    checkpointer = WalCheckpointer(engine, checkpointer_interval) if checkpointer_interval else None
    if checkpointer is not None:
        checkpointer.start()
    largest = 0
    try:
        for _ in range(ROUNDS):
            with engine.begin() as conn:
                conn.execute(insert(table), [{"v": ROW} for _ in range(100)])
            largest = max(largest, Path(f"{db}-wal").stat().st_size)
            if checkpointer is not None:  # the next write starts over once a checkpoint has run
                wanted = checkpointer.checkpoints + 2
                assert eventually(lambda c=checkpointer, n=wanted: c.checkpoints >= n, timeout=30)
    finally:
        if checkpointer is not None:
            checkpointer.close()
        engine.dispose()
    return largest


def test_background_checkpoints_keep_the_wal_small(tmp_path: Path) -> None:
    unchecked = _write_rounds(tmp_path / "unchecked.db", None)
    checked = _write_rounds(tmp_path / "checked.db", 0.05)
    assert unchecked > 6_000_000  # no commit checkpointed: everything piled up in the WAL
    assert checked < unchecked / 3, (checked, unchecked)
