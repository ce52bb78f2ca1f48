"""A finished batch's output and error files, written a stored chunk at a time. Each stays an
unfinished upload until the batch's final compare-and-set makes it visible in the same
transaction; a finalizer that dies before that leaves an upload the purge removes."""

from __future__ import annotations

from genq import constants as c
from genq.store.batches import StoredBatch
from genq.store.files import FileStore

OUTPUT_PURPOSE = "batch_output"


class OutputFile:
    """One output file, written a stored chunk at a time; no file at all if nothing was."""

    def __init__(self, files: FileStore, batch: StoredBatch, kind: str) -> None:
        self.files, self.batch, self.kind = files, batch, kind
        self.file_id: str | None = None
        self.buffer = bytearray()
        self.seq = self.size = 0

    def write(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= c.FILE_CHUNK_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self.buffer:
            return
        if self.file_id is None:
            name = f"{self.batch.id}_{self.kind}.jsonl"
            self.file_id = self.files.begin(self.batch.tenant, name, OUTPUT_PURPOSE)
        self.files.append(self.file_id, self.seq, bytes(self.buffer))
        self.seq += 1
        self.size += len(self.buffer)
        self.buffer.clear()

    def close(self) -> dict[str, int]:
        """Write what is buffered; ``{file id: size}`` for the batch's final move to make
        visible (the file stays an unfinished upload until then), or nothing if empty."""
        self._flush()
        return {} if self.file_id is None else {self.file_id: self.size}

    def discard(self) -> None:
        if self.file_id is not None:
            self.files.discard(self.file_id)
            self.file_id = None
