"""The job routes answer a record with pydantic's own JSON (``model_dump_json``): the same
document and headers the gateway sent before through ``JSONResponse(model_dump(mode="json"))``,
byte for byte, except that a float below 1e-4 in a request is written ``1.5e-7`` where Python's
``json`` wrote ``1.5e-07`` (the same number)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.responses import JSONResponse

from producers.gateway.routes_jobs import record_response
from schemas import JobRecord

NOW = datetime(2026, 12, 1, 22, 58, 3, 123456, tzinfo=UTC)


def _record(**fields: object) -> JobRecord:
    base: dict[str, object] = {
        "id": str(uuid.UUID(int=7)),
        "status": "succeeded",
        "kind": "chat",
        "model": "fake-model",
        "lane": "interactive",
        "priority": 5,
        "tenant": "acme",
        "request": {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 256},
        "attempts": 1,
        "created_at": NOW,
        "cancel_requested": False,
        "metadata": {},
    }
    return JobRecord.model_validate({**base, **fields})


RECORDS = {
    "queued": _record(status="queued", attempts=0),
    "succeeded, typical floats": _record(
        request={"messages": [{"role": "user", "content": "x"}], "temperature": 0.7, "top_p": 1.0},
        result={"text": "pong", "finish_reason": "stop"},
        usage={"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        started_at=NOW,
        finished_at=NOW + timedelta(seconds=1),
    ),
    "succeeded, tiny floats": _record(
        result={"text": 'héllo wörld ✓ 漢字 "quoted" \\ \n tab\t', "finish_reason": "stop"},
        usage={"prompt_tokens": 3, "completion_tokens": 10, "total_tokens": 13},
        started_at=NOW + timedelta(milliseconds=5),
        first_token_at=NOW + timedelta(milliseconds=9),
        finished_at=NOW + timedelta(seconds=1),
        request={
            "messages": [{"role": "user", "content": "ünïcode ✓"}],
            "temperature": 0.1,
            "top_p": 1.5e-7,
            "seed": -3,
            "big": 1e20,
            "stream": True,
            "stop": None,
        },
        metadata={"team": "räd", "empty": ""},
        deadline=NOW + timedelta(hours=1),
    ),
    "failed": _record(
        status="failed",
        error={"code": "runtime_error", "message": "boom ☠", "retryable": False},
        cancel_requested=True,
        attempts=3,
    ),
}


@pytest.mark.parametrize("name", list(RECORDS))
def test_the_same_bytes_and_headers_as_before(name: str) -> None:
    record = RECORDS[name]
    before = JSONResponse(
        record.model_dump(mode="json"), status_code=201, headers={"Location": "/v1/jobs/x"}
    )
    now = record_response(record, 201, Location="/v1/jobs/x")
    assert json.loads(now.body) == json.loads(before.body)
    if "tiny floats" not in name:
        assert now.body == before.body
    else:
        assert b"1.5e-7" in bytes(now.body) and b"1.5e-07" in bytes(before.body)
    assert now.status_code == 201
    assert now.headers["content-length"] == str(len(now.body))
    assert {k: v for k, v in now.headers.items() if k != "content-length"} == {
        k: v for k, v in before.headers.items() if k != "content-length"
    }
