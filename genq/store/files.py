"""Files (``/v1/files``) kept in the store: a ``files`` row and its bytes as ``file_chunks`` rows.

An upload is written a chunk at a time, each chunk its own short transaction, so neither the
writer nor the store ever holds a whole file, and an upload never holds the SQLite writer lock
for longer than one chunk. A file is visible (``processed``) only once all of it is written;
reading streams it back a chunk at a time. Every host reaches the store, so every host can
read every file.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import Connection, Engine, Update, delete, func, select, update

from genq.store.engine import reader
from genq.store.tables import file_chunks, files, utcnow

__all__ = ["FILE_ID_PREFIX", "FileStore", "StoredFile", "finish_upload"]

FILE_ID_PREFIX = "file-"
UPLOADING = "uploading"
PROCESSED = "processed"
T = TypeVar("T")


@dataclass(frozen=True)
class StoredFile:
    """A complete file, as ``GET /v1/files/{id}`` shows it."""

    id: str
    tenant: str
    filename: str
    purpose: str
    bytes: int
    status: str
    created_at: datetime


def finish_upload(file_id: str, size: int, purpose: str | None = None) -> Update:
    """The statement that makes a complete upload visible, for a caller's transaction."""
    values: dict[str, object] = {"status": PROCESSED, "bytes": size}
    if purpose is not None:
        values["purpose"] = purpose
    return update(files).where(files.c.id == file_id, files.c.status == UPLOADING).values(**values)


def new_file_id() -> str:
    return f"{FILE_ID_PREFIX}{uuid.uuid4().hex[:24]}"


class FileStore:
    """Files in the result store. Thread-safe; one per process is enough."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.reads = reader(engine)

    # -- writing -------------------------------------------------------------------------
    def begin(self, tenant: str, filename: str, purpose: str) -> str:
        """Start an upload; its id, invisible until ``finish``."""
        file_id = new_file_id()
        row = {
            "id": file_id,
            "tenant": tenant,
            "filename": filename[:255],
            "purpose": purpose,
            "bytes": 0,
            "status": UPLOADING,
            "created_at": utcnow(),
        }
        self._write(lambda conn: conn.execute(files.insert().values(**row)))
        return file_id

    def append(self, file_id: str, seq: int, data: bytes) -> None:
        """Write chunk ``seq`` (0, 1, 2…) of an upload."""
        row = {"file_id": file_id, "seq": seq, "data": data}
        self._write(lambda conn: conn.execute(file_chunks.insert().values(**row)))

    def finish(self, file_id: str, size: int, purpose: str | None = None) -> StoredFile:
        """Make a complete upload visible (its purpose set now, if it was not known before)."""
        query = finish_upload(file_id, size, purpose).returning(*files.c)
        row = self._write(lambda conn: conn.execute(query).one())
        return StoredFile(**row._mapping)

    def discard(self, file_id: str) -> None:
        """Remove an upload (complete or not) and its bytes."""

        def remove(conn: Connection) -> None:
            conn.execute(delete(file_chunks).where(file_chunks.c.file_id == file_id))
            conn.execute(delete(files).where(files.c.id == file_id))

        self._write(remove)

    def write(
        self, tenant: str, filename: str, purpose: str, chunks: Iterable[bytes]
    ) -> StoredFile:
        """A whole file from ``chunks`` (each one row); on any failure nothing is left."""
        file_id = self.begin(tenant, filename, purpose)
        size = 0
        try:
            for seq, chunk in enumerate(chunks):
                self.append(file_id, seq, chunk)
                size += len(chunk)
            return self.finish(file_id, size)
        except BaseException:
            self.discard(file_id)
            raise

    def purge_abandoned(self, older_than_seconds: float, now: datetime | None = None) -> int:
        """Remove uploads still ``uploading`` after this long (their writer died)."""
        cutoff = (now or utcnow()) - timedelta(seconds=older_than_seconds)
        query = select(files.c.id).where(files.c.status == UPLOADING, files.c.created_at < cutoff)
        with self.reads.connect() as conn:
            ids = list(conn.execute(query.limit(100)).scalars())
        for file_id in ids:
            self.discard(file_id)
        return len(ids)

    # -- reading -------------------------------------------------------------------------
    def get(self, file_id: str, tenant: str | None) -> StoredFile | None:
        """A complete file (within ``tenant``, unless None); None for another tenant's."""
        query = select(files).where(files.c.id == file_id, files.c.status == PROCESSED)
        if tenant is not None:
            query = query.where(files.c.tenant == tenant)
        with self.reads.connect() as conn:
            row = conn.execute(query).first()
        return StoredFile(**row._mapping) if row else None

    def chunk(self, file_id: str, seq: int) -> bytes | None:
        """Stored chunk ``seq`` of a file; None past its end."""
        query = select(file_chunks.c.data).where(
            file_chunks.c.file_id == file_id, file_chunks.c.seq == seq
        )
        with self.reads.connect() as conn:
            data = conn.execute(query).scalar()
        return None if data is None else bytes(data)

    def chunks(self, file_id: str) -> Iterator[bytes]:
        """The file's bytes, one stored chunk per read (never the whole file in memory)."""
        seq = 0
        while (data := self.chunk(file_id, seq)) is not None:
            yield data
            seq += 1

    def lines(self, file_id: str) -> Iterator[tuple[int, bytes]]:
        """The file's lines (numbered from 1, without their line ends), streamed."""
        number, pending = 0, b""
        for chunk in self.chunks(file_id):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                number += 1
                yield number, line.rstrip(b"\r")
        if pending:
            yield number + 1, pending.rstrip(b"\r")

    def count(self, tenant: str) -> int:
        query = select(func.count()).where(files.c.tenant == tenant, files.c.status == PROCESSED)
        with self.reads.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def page(
        self,
        tenant: str | None,
        *,
        purpose: str | None = None,
        after: str | None = None,
        limit: int = 100,
        newest_first: bool = True,
    ) -> list[StoredFile]:
        """Complete files, newest first (or oldest), after the file ``after`` if given."""
        c = files.c
        order = (c.created_at.desc(), c.id.desc()) if newest_first else (c.created_at, c.id)
        query = select(files).where(c.status == PROCESSED).order_by(*order).limit(limit)
        if tenant is not None:
            query = query.where(c.tenant == tenant)
        if purpose is not None:
            query = query.where(c.purpose == purpose)
        with self.reads.connect() as conn:
            if after is not None:
                mark = conn.execute(select(c.created_at, c.id).where(c.id == after)).first()
                if mark is not None:
                    at, mark_id = mark
                    if newest_first:
                        query = query.where(
                            (c.created_at < at) | ((c.created_at == at) & (c.id < mark_id))
                        )
                    else:
                        query = query.where(
                            (c.created_at > at) | ((c.created_at == at) & (c.id > mark_id))
                        )
            rows = conn.execute(query).all()
        return [StoredFile(**row._mapping) for row in rows]

    def delete(self, file_id: str, tenant: str | None) -> bool:
        """Delete a complete file and its bytes; False if there is no such file."""
        if self.get(file_id, tenant) is None:
            return False
        self.discard(file_id)
        return True

    def _write(self, work: Callable[[Connection], T]) -> T:
        with self.engine.begin() as conn:
            return work(conn)
