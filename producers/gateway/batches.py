"""A batch's life: accepted ``validating``, then (by the driver) every line checked and each line
made a genq job in the batch lane, moved along as its jobs finish, cancelled or expired, and
finalized into output and error files.

Sync, like the store: the gateway runs it in threads, ``genq batch`` in its own process.

Who moves a batch along is whoever holds the batches lock (``BatchDriver``: every gateway
process tries, one at a time) and a caller that cancels one. Every step is a compare-and-set
on the batch or on a job, so a step repeated after a crash, or by two processes, is harmless:
each transaction of queued lines is one while the batch is ``validating``, ``in_progress →
finalizing`` happens once every line's job is terminal, and the final
compare-and-set (``finalizing → completed``, ``cancelling → cancelled``…) is the one that sets
the output files, so a batch gets exactly one output file with exactly one line per input line,
whatever crashed while it ran. Files written by a finalizer that then lost (or died) are
removed (or purged as abandoned uploads).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis
from celery import Celery

from genq import constants as c
from genq.outbox import QUEUED_ONLY, Outbox, Settler, dispatch_webhooks
from genq.redis_keys import cancel_key
from genq.settings import Settings
from genq.store import JobStore, utcnow
from genq.store.batches import (
    BatchStore,
    DuplicateKey,
    LineCounts,
    StoredBatch,
    new_batch_id,
)
from genq.store.files import FileStore, StoredFile
from producers.gateway.batch_files import OutputFile
from producers.gateway.batch_lines import BatchRequest, LineCheck, parse_line
from producers.gateway.batch_objects import batch_object
from producers.gateway.batch_output import output_line
from producers.gateway.batch_requests import (
    BATCH_PURPOSE,
    MissingFile,
    NewBatch,
    bad_param,
)
from producers.submission import new_job, publish_stored
from schemas import Conflict, ErrorInfo, InvalidRequest, JobStatus, NotFound

__all__ = ["BatchLifecycle"]

log = logging.getLogger(__name__)

STOP_AS = {"cancelled": JobStatus.CANCELLED, "expired": JobStatus.EXPIRED}


@dataclass(frozen=True)
class BatchLifecycle:
    """Creates, cancels and moves along batches. Thread-safe."""

    settings: Settings
    store: JobStore
    files: FileStore
    batches: BatchStore
    celery: Celery
    redis: redis.Redis
    # Whether the stack serves a model (the gateway asks its runtime); None: do not check.
    serves: Callable[[str], bool] | None = None

    @property
    def outbox(self) -> Outbox:
        return Outbox(self.celery, self.store, self.redis, self.settings)

    # -- accepting -----------------------------------------------------------------------
    def create(self, tenant: str, request: NewBatch) -> StoredBatch:
        """Store the batch ``validating`` once the request's own fields and its input file
        check; the driver checks its lines and queues them (``_validate_and_queue``). A request
        retried with its ``Idempotency-Key`` gets the batch the first attempt created."""
        if request.idempotency_key is not None:
            earlier = self.batches.by_idempotency_key(tenant, request.idempotency_key)
            if earlier is not None:
                return self._replay(earlier, request)
        try:
            return self._create(tenant, request)
        except DuplicateKey:  # a concurrent attempt of the same request won
            assert request.idempotency_key is not None
            earlier = self.batches.by_idempotency_key(tenant, request.idempotency_key)
            assert earlier is not None
            return self._replay(earlier, request)

    def _replay(self, earlier: StoredBatch, request: NewBatch) -> StoredBatch:
        if not request.same_as(earlier):
            raise Conflict(
                "this Idempotency-Key was already used for a different batch; use a new key "
                "for a new batch"
            )
        return earlier

    def _create(self, tenant: str, request: NewBatch) -> StoredBatch:
        source = self.files.get(request.input_file_id, tenant)
        if source is None:
            raise MissingFile(request.input_file_id)
        if source.purpose != BATCH_PURPOSE:
            raise bad_param(
                "input_file_id",
                f"File {source.id} has purpose {source.purpose!r}; a batch reads a file "
                "uploaded with purpose 'batch'",
            )
        if source.bytes == 0:
            raise bad_param("input_file_id", f"File {source.id} is empty: a batch needs requests")
        now = utcnow()
        values: dict[str, Any] = {
            "id": new_batch_id(),
            "tenant": tenant,
            "status": "validating",
            "endpoint": request.endpoint,
            "input_file_id": source.id,
            "completion_window": request.completion_window,
            "metadata": request.metadata,
            "priority": request.priority,
            "expires_at": now + timedelta(seconds=self.settings.batch_completion_window_seconds),
            "created_at": now,
            "idempotency_key": request.idempotency_key,
        }
        return self.batches.create(values)

    # -- validating and queuing ----------------------------------------------------------
    def _validate_and_queue(self, batch: StoredBatch, until: float) -> int:
        """``validating``: every line checked before any job exists (a bad line fails the
        batch, nothing queued), then the lines stored and published a transaction at a time,
        resuming after the last line stored, until ``until`` (``time.monotonic()``; at least
        one transaction); then
        ``in_progress``. Each transaction is a compare-and-set on the batch still
        ``validating``, so a cancel stops the queuing and a driver that dies mid-way loses no
        line (the next pass resumes) and gives none a second job (``batch_lines`` is keyed by
        line). Lines stored but not published when it died are re-sent by the sweep."""
        source = self.files.get(batch.input_file_id, batch.tenant)
        done = self.batches.last_line(batch.id)
        if source is None:  # deleted while validating
            return self._fail(batch, [_batch_error("file_not_found", "The input file was deleted")])
        if done == 0:
            check = self._check_lines(source, batch.endpoint)
            errors = [e.as_dict() for e in check.errors] or _file_errors(check, source.id)
            if errors:
                return self._fail(batch, errors, total=check.lines)
        group: list[BatchRequest] = []
        for line in self._requests(batch, source, after_line=done):
            group.append(line)
            if len(group) >= c.BATCH_LINES_PER_TRANSACTION:
                if not self._enqueue_group(batch, group):
                    return 1
                group = []
                if time.monotonic() > until:
                    return 1  # the next pass resumes after the last line stored
        if group and not self._enqueue_group(batch, group):
            return 1
        self.batches.move(batch.id, ["validating"], "in_progress")
        return 1

    def _fail(self, batch: StoredBatch, errors: list[dict[str, Any]], total: int = 0) -> int:
        moved = self.batches.move(
            batch.id,
            ["validating"],
            "failed",
            values={"errors": errors, "total": total},
            event=batch_object,
        )
        if moved is None:
            return 0
        self._dispatch(moved[1])
        return 1

    def _check_lines(self, source: StoredFile, endpoint: str) -> LineCheck:
        check = LineCheck(endpoint, self.settings.batch_max_lines)
        for number, raw in self.files.lines(source.id):
            check.add(raw, number)
            if check.too_many:
                return check
        if self.serves is not None:
            for model in list(check.models):
                if model is not None and not self.serves(model):
                    check.unknown_model(model)
        return check

    def _requests(
        self, batch: StoredBatch, source: StoredFile, *, after_line: int
    ) -> Iterator[BatchRequest]:
        for number, raw in self.files.lines(source.id):
            if number <= after_line or not raw.strip():
                continue
            line = parse_line(
                raw,
                number,
                endpoint=batch.endpoint,
                priority=batch.priority,
                lane=c.LANE_BATCH,
                deadline=batch.expires_at,
                batch_id=batch.id,
            )
            if not isinstance(line, BatchRequest):  # the file changed under us: it cannot
                raise InvalidRequest(f"line {number} of {source.id} no longer checks")
            yield line

    def _enqueue_group(self, batch: StoredBatch, group: list[BatchRequest]) -> bool:
        """Store and publish one transaction of lines; False if the batch was cancelled."""
        rows = [
            (line.line, line.custom_id, new_job(self.settings, line.job, batch.tenant))
            for line in group
        ]
        records = self.batches.add_lines(batch.id, rows)
        if records is None:
            return False
        _sent, error = publish_stored(self.celery, self.store, self.settings, records)
        if error is not None:  # stored: the sweep re-sends them; the next pass goes on
            raise error
        return True

    # -- reading -------------------------------------------------------------------------
    def view(self, batch: StoredBatch) -> dict[str, Any]:
        """The batch in OpenAI's shape, its counts live while it runs."""
        if batch.status in ("in_progress", "finalizing", "cancelling"):
            return batch_object(batch, self.batches.counts(batch.id))
        return batch_object(batch)

    # -- cancelling ----------------------------------------------------------------------
    def cancel(self, batch_id: str, tenant: str | None) -> StoredBatch:
        """``cancelling``: queued lines never run, running ones are stopped, finished ones
        are kept; ``cancelled`` once every line is terminal (output files for what finished)."""
        batch = self.batches.get(batch_id, tenant)
        if batch is None:
            raise NotFound(f"No batch found with id '{batch_id}'")
        if batch.status in ("cancelling", "cancelled"):
            return batch
        # From ``validating`` too: the driver's next transaction of lines finds it moved
        # (a compare-and-set) and stores no more; those stored are stopped as any others.
        moved = self.batches.move(
            batch.id, ["validating", "in_progress"], "cancelling", values={"ends_as": "cancelled"}
        )
        if moved is None:
            current = self.batches.get(batch_id, tenant)
            assert current is not None
            if current.status in ("cancelling", "cancelled"):
                return current
            raise Conflict(f"Cannot cancel a batch with status {current.status!r}")
        self._advance_one(moved[0], utcnow(), until=0.0)
        current = self.batches.get(batch_id, tenant)
        assert current is not None
        return current

    # -- moving along --------------------------------------------------------------------
    def advance(self, now: datetime | None = None) -> int:
        """One pass over the batches that have something to do; how many moved."""
        moved = 0
        # One queuing budget for the pass, well inside the lock: the oldest validating batch
        # always goes on, the next ones while time is left.
        until = time.monotonic() + c.BATCH_QUEUE_SECONDS_PER_PASS
        queued = False
        for batch in self.batches.active():
            if batch.status == "validating":
                if queued and time.monotonic() > until:
                    continue
                queued = True
            try:
                moved += self._advance_one(batch, now or utcnow(), until=until)
            except Exception:  # the next pass tries again; one batch must not stop the rest
                log.warning("batch %s: could not move it along", batch.id, exc_info=True)
        return moved

    def _advance_one(self, batch: StoredBatch, now: datetime, *, until: float) -> int:
        if batch.status == "validating":
            return self._validate_and_queue(batch, until)
        if batch.status == "in_progress":
            ends_as = "expired" if now >= batch.expires_at else None
            if ends_as is None and not self._all_done(batch):
                return 0
            moved = self.batches.move(
                batch.id, ["in_progress"], "finalizing", values={"ends_as": ends_as or "completed"}
            )
            if moved is None:
                return 0
            batch = moved[0]
        if batch.ends_as in STOP_AS:
            self._stop_lines(batch)
            if not self._all_done(batch):
                return 1
        return 1 + int(self._finish(batch))

    def _all_done(self, batch: StoredBatch) -> bool:
        counts = self.batches.counts(batch.id)
        return counts.open == 0 and counts.total == batch.total

    def _stop_lines(self, batch: StoredBatch) -> None:
        """Queued lines end (cancelled, or expired with the window) and never run; running ones
        are told to stop (their workers settle them); finished ones are kept.

        Every open line is flagged at once (a worker that gets a flagged line settles it
        without running it); at most ``BATCH_STOP_LINES_PER_PASS`` queued lines are settled
        here, the rest by the next passes, so a large batch does not hold a request or the
        batches lock for long.
        """
        target = STOP_AS.get(batch.ends_as or "", JobStatus.CANCELLED)
        for job_id in self.batches.flag_cancel(batch.id):
            self.redis.set(cancel_key(job_id), "1", ex=c.CANCEL_FLAG_TTL_SECONDS)
        error = ErrorInfo(
            code=f"batch_{batch.ends_as or 'cancelled'}",
            message=f"the job's batch {batch.id} was {batch.ends_as or 'cancelled'}",
        )
        limit = c.BATCH_STOP_LINES_PER_PASS
        for job_id in self.batches.open_jobs(batch.id, JobStatus.QUEUED, limit=limit):
            self.outbox.settle(
                job_id,
                target,
                by=Settler.ANYONE,
                worker=None,
                reason=f"batch {batch.id} {batch.ends_as}",
                only_from=QUEUED_ONLY,
                values={"error": error.model_dump(mode="json")},
            )

    def _finish(self, batch: StoredBatch) -> bool:
        """Write the output and error files and move the batch to its final status, which
        makes them visible; False if another finalizer got there first (its files stand, ours
        are removed)."""
        final = batch.ends_as or "completed"
        output = OutputFile(self.files, batch, "output")
        errors = OutputFile(self.files, batch, "error")
        try:
            counts = self._write_lines(batch, final, output, errors)
            written = {**output.close(), **errors.close()}
        except BaseException:
            output.discard()
            errors.discard()
            raise
        moved = self.batches.move(
            batch.id,
            [batch.status],
            final,
            values={
                "output_file_id": output.file_id,
                "error_file_id": errors.file_id,
                "total": counts.total,
                "completed": counts.completed,
                "failed": counts.failed,
            },
            event=batch_object,
            files_done=written,
        )
        if moved is None:
            output.discard()
            errors.discard()
            return False
        self._dispatch(moved[1])
        log.info("batch %s %s: %s", batch.id, final, counts)
        return True

    def _write_lines(
        self, batch: StoredBatch, final: str, output: OutputFile, errors: OutputFile
    ) -> LineCounts:
        total = completed = 0
        after = 0
        while True:
            lines = self.batches.lines(batch.id, after_line=after)
            if not lines:
                break
            for line in lines:
                answer = output_line(line.custom_id, line.job_id, line.record, final)
                (output if answer.ok else errors).write(answer.text)
                total += 1
                completed += answer.ok
            after = lines[-1].line
        return LineCounts(total=total, completed=completed, failed=total - completed)

    def _dispatch(self, event_id: str | None) -> None:
        if event_id is not None:
            dispatch_webhooks(self.celery, self.store, event_id=event_id)


def _batch_error(code: str, message: str, param: str | None = "input_file_id") -> dict[str, Any]:
    """An error of the whole batch (not of one line), in ``errors.data``'s shape."""
    return {"code": code, "line": None, "message": message, "param": param}


def _file_errors(check: LineCheck, file_id: str) -> list[dict[str, Any]]:
    """What is wrong with the file as a whole: too many lines, or none."""
    if check.too_many:
        return [
            _batch_error(
                "too_many_requests",
                f"File {file_id} has more than {check.max_lines} requests, the most a batch "
                "may have; split it into several batches",
            )
        ]
    if check.lines == 0:
        return [_batch_error("empty_file", f"File {file_id} has no requests, only blank lines")]
    return []
