"""The Responses API's stream events of one response, as plain dicts. Pure.

Each is built without its ``sequence_number``: ``responses_stream`` numbers them in order.
"""

from __future__ import annotations

from typing import Any

from producers.gateway.responses_shapes import (
    CANCELLED,
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    INCOMPLETE,
    message_id,
    output_message,
    output_text_part,
    response_object,
    response_status,
)
from schemas import JobRecord

# Which status each terminal event announces (the SDK has no event for ``cancelled``: a
# cancelled response ends its stream with ``response.failed``, its status ``cancelled``).
TERMINAL_EVENT = {
    COMPLETED: "response.completed",
    INCOMPLETE: "response.incomplete",
    FAILED: "response.failed",
    CANCELLED: "response.failed",
}


class ResponseEvents:
    """The stream events of one response, without their ``sequence_number`` (the reader
    numbers them in order: the order is a function of the job's chunk stream alone)."""

    def __init__(self, record: JobRecord) -> None:
        self.record = record
        self.item_id = message_id(record)

    def state(self, kind: str, status: str) -> dict[str, Any]:
        """``response.created`` / ``queued`` / ``in_progress``: a snapshot at ``status``."""
        return {"type": kind, "response": response_object(self.record, status)}

    def item_added(self) -> dict[str, Any]:
        return {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": output_message(self.record, None, IN_PROGRESS),
        }

    def part_added(self) -> dict[str, Any]:
        return self._part("response.content_part.added", "")

    def delta(self, text: str) -> dict[str, Any]:
        return {
            "type": "response.output_text.delta",
            "item_id": self.item_id,
            "output_index": 0,
            "content_index": 0,
            "delta": text,
            "logprobs": [],
        }

    def text_done(self, text: str) -> dict[str, Any]:
        return {
            "type": "response.output_text.done",
            "item_id": self.item_id,
            "output_index": 0,
            "content_index": 0,
            "text": text,
            "logprobs": [],
        }

    def part_done(self, text: str) -> dict[str, Any]:
        return self._part("response.content_part.done", text)

    def item_done(self, text: str, status: str) -> dict[str, Any]:
        return {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": output_message(self.record, text, status),
        }

    def _part(self, kind: str, text: str) -> dict[str, Any]:
        return {
            "type": kind,
            "item_id": self.item_id,
            "output_index": 0,
            "content_index": 0,
            "part": output_text_part(text),
        }

    @staticmethod
    def ending(final: JobRecord) -> dict[str, Any]:
        """The terminal event, with the final ``Response``."""
        status = response_status(final)
        return {"type": TERMINAL_EVENT[status], "response": response_object(final)}

    @staticmethod
    def error(message: str, code: str = "server_error") -> dict[str, Any]:
        return {"type": "error", "code": code, "message": message, "param": None}
