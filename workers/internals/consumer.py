"""A Celery consumer that dead-letters what it cannot run instead of dropping it, and sends
task events in groups.

Celery's default acks (drops) an undecodable message after logging it, and rejects messages
for unknown tasks; genq keeps each one, raw bytes and error, in ``genq.dead_letter``.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery.worker.consumer import Consumer

from genq.constants import QUARANTINE_KEY
from genq.dead_letters import DeadLetterRow, publish_dead_letter, record_dead_letter
from genq.store import utcnow
from schemas import ErrorCode, ErrorInfo
from workers.context import context_for

log = logging.getLogger(__name__)

# Task events (for Flower) wait this long in Celery's buffer and go out as one ``task.multi``
# message. Celery flushes on the next loop turn instead: one Redis PUBLISH per event, which
# was 40 % of a busy worker's main process.
EVENT_FLUSH_SECONDS = 0.05


def _raw(message: Any) -> bytes:
    body = getattr(message, "body", b"")
    return body if isinstance(body, bytes) else str(body).encode()


class DeadLetteringConsumer(Consumer):  # type: ignore[misc]
    """Consumer whose "cannot process" paths publish to the dead-letter queue, then ack."""

    _event_flush_pending = False

    def on_send_event_buffered(self) -> None:
        if self.hub is None:
            super().on_send_event_buffered()
        elif not self._event_flush_pending:
            self._event_flush_pending = True
            self.hub.call_later(EVENT_FLUSH_SECONDS, self._flush_grouped_events)

    def _flush_grouped_events(self) -> None:
        self._event_flush_pending = False
        self._flush_events()

    def shutdown(self) -> None:
        try:
            self._flush_events()  # what is still buffered goes out before the dispatcher closes
        except Exception:
            log.warning("could not send the last task events", exc_info=True)
        super().shutdown()

    def _dead_letter(self, message: Any, reason: str, exc: BaseException | None) -> None:
        detail = f"{exc.__class__.__name__}: {exc}" if exc else reason
        letter = DeadLetterRow(
            id=str(uuid.uuid4()),
            job_id=None,
            reason=reason,
            error=ErrorInfo(code=ErrorCode.UNDECODABLE, message=detail[:2000]),
            raw_body=_raw(message),
            at=utcnow(),
        )
        try:
            record_dead_letter(context_for(self.app).store, letter, attempts=0)
            publish_dead_letter(self.app, letter, attempts=0)
        except Exception:
            # Keep the bytes for the sweep rather than hold a worker slot with an unacked message.
            log.exception("could not dead-letter a %s message; quarantining it", reason)
            try:
                context_for(self.app).redis.lpush(QUARANTINE_KEY, _raw(message))
            except Exception:
                log.exception("could not quarantine it either; leaving it unacked")
                return
        log.warning("dead-lettered a message: %s (%s)", reason, detail[:200])
        message.ack()

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        self._dead_letter(message, "undecodable", exc)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        self._dead_letter(message, "unknown_message_format", None)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        self._dead_letter(message, "unknown_task", exc)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        self._dead_letter(message, "invalid_task", exc)
