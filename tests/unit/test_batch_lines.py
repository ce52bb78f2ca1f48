"""Batch input lines, batch output lines and a batch's priority: pure functions, by table."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from producers.gateway.batch_lines import BatchRequest, LineCheck, LineError, parse_line
from producers.gateway.batch_output import output_line
from producers.gateway.batch_requests import batch_priority, check_new_batch
from producers.gateway.uploads import UploadReader
from schemas import InvalidRequest, JobKind, JobRecord, JobStatus

CHAT = "/v1/chat/completions"


def line(custom_id: Any = "a", url: str = CHAT, **body: Any) -> bytes:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **body}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body}).encode()


BAD: list[tuple[bytes, str, str | None]] = [
    (b"{not json", "invalid_json_line", None),
    (b"[1, 2]", "invalid_json_line", None),
    (line(custom_id=None), "missing_required_parameter", "custom_id"),
    (line(custom_id=""), "missing_required_parameter", "custom_id"),
    (line(custom_id="x" * 513), "invalid_value", "custom_id"),
    (line(url="/v1/embeddings"), "mismatched_endpoint", "url"),
    (line(temperature=7), "invalid_request", "body.temperature"),
    (line(n=3), "unsupported_parameter", "body.n"),
    (line(stream=True), "invalid_value", "body.stream"),
    (line(mirostat=2), "unknown_parameter", "body.mirostat"),
    (json.dumps({"custom_id": "a", "url": CHAT, "body": {}, "extra": 1}).encode(),
     "unknown_parameter", "extra"),
    (json.dumps({"custom_id": "a", "method": "GET", "url": CHAT, "body": {}}).encode(),
     "invalid_value", "method"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "code", "param"), BAD)
def test_a_bad_line_names_its_code_and_param(raw: bytes, code: str, param: str | None) -> None:
    checked = parse_line(raw, 7, endpoint=CHAT, priority=2, lane="batch")
    assert isinstance(checked, LineError)
    assert (checked.code, checked.line, checked.param) == (code, 7, param)
    assert checked.message


def test_a_good_line_is_a_job_in_the_batch_lane() -> None:
    deadline = datetime(2030, 1, 1, tzinfo=UTC)
    checked = parse_line(
        line(max_tokens=5), 3, endpoint=CHAT, priority=6, lane="batch", deadline=deadline,
        batch_id="batch_x",
    )  # fmt: skip
    assert isinstance(checked, BatchRequest)
    assert (checked.line, checked.custom_id) == (3, "a")
    job = checked.job
    assert (job.kind, job.lane, job.priority, job.max_tokens) == (JobKind.CHAT, "batch", 6, 5)
    assert job.deadline == deadline and job.metadata == {"genq_batch_id": "batch_x"}


def test_line_check_counts_duplicates_models_and_the_limit() -> None:
    check = LineCheck(CHAT, max_lines=3)
    for number, raw in enumerate([line("a"), b"", line("b", model="other"), line("a")], 1):
        check.add(raw, number)
    assert check.lines == 3 and not check.too_many
    assert [(e.code, e.line) for e in check.errors] == [("duplicate_custom_id", 4)]
    assert check.models == {"m": 1, "other": 3}
    check.unknown_model("other")
    assert check.errors[-1].code == "model_not_found" and check.errors[-1].line == 3
    check.add(line("c"), 5)
    assert check.too_many


@pytest.mark.parametrize(
    ("header", "metadata", "expected"),
    [(None, None, 2), ("7", None, 7), (None, {"genq_priority": "4"}, 4),
     ("9", {"genq_priority": "1"}, 9), (" ", {"genq_priority": "0"}, 0)],
)  # fmt: skip
def test_batch_priority(header: str | None, metadata: dict[str, str] | None, expected: int) -> None:
    assert batch_priority(header, metadata) == expected


@pytest.mark.parametrize(
    ("header", "metadata", "param"),
    [("10", None, "X-Genq-Priority"), (None, {"genq_priority": "high"}, "metadata.genq_priority")],
)
def test_a_bad_priority_is_a_400(header: str | None, metadata: Any, param: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        batch_priority(header, metadata)
    assert raised.value.details[0]["field"] == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"endpoint": CHAT, "completion_window": "24h"}, "input_file_id"),
        ({"input_file_id": "f", "endpoint": "/v1/x", "completion_window": "24h"}, "endpoint"),
        ({"input_file_id": "f", "endpoint": CHAT, "completion_window": "1h"}, "completion_window"),
        ({"input_file_id": "f", "endpoint": CHAT, "completion_window": "24h", "metadata": [1]},
         "metadata"),
        ({"input_file_id": "f", "endpoint": CHAT, "completion_window": "24h", "x": 1}, "x"),
    ],
)  # fmt: skip
def test_a_bad_batch_request_names_its_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        check_new_batch(body, None)
    assert raised.value.details[0]["field"] == param


def record(status: JobStatus, **fields: Any) -> JobRecord:
    return JobRecord(
        id="0f1e2d3c-0000-4000-8000-000000000000",
        status=status,
        kind=JobKind.CHAT,
        model="m",
        lane="batch",
        priority=2,
        request={},
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        **fields,
    )


def test_output_lines() -> None:
    job_id = "0f1e2d3c-0000-4000-8000-000000000000"
    ok = output_line("a", job_id, record(JobStatus.SUCCEEDED, result={"text": "hi"}), "completed")
    data = json.loads(ok.text)
    assert ok.ok and ok.text.endswith(b"\n")
    assert data["id"] == "batch_req_0f1e2d3c000040008000000000000000"
    assert data["response"]["status_code"] == 200 and data["response"]["request_id"] == job_id
    assert data["response"]["body"]["choices"][0]["message"]["content"] == "hi"
    failed = record(
        JobStatus.FAILED, error={"code": "context_length_exceeded", "message": "too long"}
    )
    bad = json.loads(output_line("b", job_id, failed, "completed").text)
    assert bad["response"]["status_code"] == 400 and bad["error"] is None
    assert bad["response"]["body"]["error"]["code"] == "context_length_exceeded"
    for ends_as in ("cancelled", "expired"):
        stopped = output_line("c", job_id, record(JobStatus.CANCELLED), ends_as)
        assert not stopped.ok
        assert json.loads(stopped.text)["error"]["code"] == f"batch_{ends_as}"
    gone = json.loads(output_line("d", job_id, None, "completed").text)
    assert gone["error"]["code"] == "job_missing"


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "b0undary") -> bytes:
    out = b""
    for name, filename, value in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        out += value + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def test_upload_reader_hands_on_the_file_piece_by_piece() -> None:
    content = b"line one\nline two\n" * 100
    body = multipart([("purpose", None, b"batch"), ("file", "in.jsonl", content)])
    reader = UploadReader(b"b0undary", max_file_bytes=10_000)
    received = b""
    for start in range(0, len(body), 37):
        reader.feed(body[start : start + 37])
        received += bytes(reader.pending)
        reader.pending.clear()
    reader.finish()
    assert received == content and reader.file_bytes == len(content)
    assert (reader.fields, reader.filename) == ({"purpose": "batch"}, "in.jsonl")


def test_upload_reader_refuses_past_the_limit_and_without_a_file() -> None:
    reader = UploadReader(b"b0undary", max_file_bytes=10)
    with pytest.raises(Exception, match="larger than"):
        reader.feed(multipart([("file", "x", b"x" * 11)]))
    empty = UploadReader(b"b0undary", max_file_bytes=10)
    empty.feed(multipart([("purpose", None, b"batch")]))
    with pytest.raises(InvalidRequest, match="no 'file' part"):
        empty.finish()
