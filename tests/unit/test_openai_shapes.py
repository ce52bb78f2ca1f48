"""OpenAI request and response shapes <-> genq jobs, records and chunks: pure tables."""

from __future__ import annotations

import base64
import struct
from datetime import UTC, datetime
from typing import Any

import pytest

from producers.gateway.openai_requests import (
    UnsupportedParam,
    chat_call,
    completion_call,
    embedding_call,
    param_of,
    priority_from_header,
)
from producers.gateway.openai_responses import (
    ChunkShapes,
    encode_vector,
    finish_reason,
    model_list,
    openai_error,
    outcome_error,
    outcome_status,
    response_body,
)
from schemas import ErrorCode, GenqError, InvalidRequest, JobKind, JobRecord, JobStatus
from schemas.errors import RateLimited, Unauthorized

HELLO = [{"role": "user", "content": "hi"}]
JOB_ID = "3f2b8c1e-0a4d-4e5f-9b6a-7c8d9e0f1a2b"


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": HELLO, **fields}


ACCEPTED_CHATS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (chat(), {"kind": JobKind.CHAT, "model": "m", "priority": 7, "lane": "interactive"}),
    (chat(max_completion_tokens=9), {"max_tokens": 9}),
    (chat(max_tokens=5, temperature=0.5, top_p=0.9, seed=3), {"max_tokens": 5, "seed": 3}),
    (chat(stop="END"), {"stop": ["END"]}),
    (chat(user="u", store=True, service_tier="auto", n=1, logprobs=False), {}),
    (chat(response_format={"type": "text"}, tools=[], tool_choice="none"), {}),
    (chat(metadata={"team": "search"}), {"metadata": {"team": "search"}}),
]


@pytest.mark.parametrize(("body", "expected"), ACCEPTED_CHATS)
def test_chat_bodies_genq_honours(body: dict[str, Any], expected: dict[str, Any]) -> None:
    job = chat_call(body, 7, "interactive", None).job
    for name, value in expected.items():
        assert getattr(job, name) == value


def test_messages_text_parts_and_developer_role() -> None:
    parts = [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]
    body = chat(
        messages=[{"role": "developer", "content": "be brief"}, {"role": "user", "content": parts}]
    )
    messages = chat_call(body, 7, "interactive", None).job.messages
    assert messages is not None
    assert [(m.role, m.content) for m in messages] == [("system", "be brief"), ("user", "one\ntwo")]


def test_stream_usage_only_when_streaming() -> None:
    options = {"stream_options": {"include_usage": True}}
    assert chat_call(chat(stream=True, **options), 7, "interactive", None).include_usage
    assert not chat_call(chat(stream=False, **options), 7, "interactive", None).include_usage


IMAGE = {"type": "image_url", "image_url": {"url": "data:,"}}
REFUSED: list[tuple[Any, dict[str, Any], str]] = [
    (chat_call, chat(n=2), "n"),
    (chat_call, chat(tools=[{"type": "function"}]), "tools"),
    (chat_call, chat(functions=[{"name": "f"}]), "functions"),
    (chat_call, chat(tool_choice="auto"), "tool_choice"),
    (chat_call, chat(response_format={"type": "json_schema"}), "response_format"),
    (chat_call, chat(logprobs=True), "logprobs"),
    (chat_call, chat(top_logprobs=2), "top_logprobs"),
    (chat_call, chat(logit_bias={"1": 5}), "logit_bias"),
    (chat_call, chat(modalities=["text", "audio"]), "modalities"),
    (chat_call, chat(mirostat=1), "mirostat"),
    (chat_call, chat(stream="yes"), "stream"),
    (chat_call, chat(temperature=3), "temperature"),
    (chat_call, chat(messages=[{"role": "user", "content": [IMAGE]}]), "messages[0].content[0]"),
    (chat_call, chat(messages=[{"role": "tool", "content": "x"}]), "messages[0].role"),
    (chat_call, chat(messages="hi"), "messages"),
    (completion_call, {"model": "m", "prompt": ["a", "b"]}, "prompt"),
    (completion_call, {"model": "m", "prompt": [1, 2, 3]}, "prompt"),
    (completion_call, {"model": "m", "prompt": "a", "best_of": 2}, "best_of"),
    (completion_call, {"model": "m", "prompt": "a", "echo": True}, "echo"),
    (completion_call, {"model": "m", "prompt": "a", "suffix": "z"}, "suffix"),
    (embedding_call, {"model": "m", "input": [[1, 2]]}, "input"),
    (embedding_call, {"model": "m", "input": "a", "dimensions": 8}, "dimensions"),
    (embedding_call, {"model": "m", "input": "a", "encoding_format": "hex"}, "encoding_format"),
]


@pytest.mark.parametrize(("build", "body", "param"), REFUSED, ids=[p for _b, _x, p in REFUSED])
def test_what_genq_cannot_honour_names_its_param(
    build: Any, body: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        build(body, 7, "interactive", None)
    assert param_of(raised.value) == param


def test_completion_and_embedding_calls() -> None:
    completion = completion_call({"model": "m", "prompt": ["once"]}, 2, "interactive", "k")
    assert (completion.job.prompt, completion.job.idempotency_key) == ("once", "k")
    assert embedding_call({"model": "m", "input": "a"}, 7, "interactive", None).base64 is False
    packed = embedding_call(
        {"model": "m", "input": ["a"], "encoding_format": "base64"}, 7, "interactive", None
    )
    assert packed.base64 and packed.job.input == ["a"]


@pytest.mark.parametrize(
    ("header", "expected"), [(None, 7), ("", 7), ("9", 9), (" 0 ", 0), ("5", 5)]
)
def test_priority_header(header: str | None, expected: int) -> None:
    assert priority_from_header(header, 7) == expected


@pytest.mark.parametrize("header", ["10", "-1", "high", "٣", "1.5"])
def test_priority_header_refused(header: str) -> None:
    with pytest.raises(UnsupportedParam) as raised:
        priority_from_header(header, 7)
    assert param_of(raised.value) == "X-Genq-Priority"


def record(kind: JobKind = JobKind.CHAT, **fields: Any) -> JobRecord:
    values: dict[str, Any] = {
        "id": JOB_ID,
        "status": JobStatus.SUCCEEDED,
        "kind": kind,
        "model": "m",
        "lane": "interactive",
        "priority": 7,
        "request": {},
        "result": {"text": "Hi!", "finish_reason": "length"},
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    return JobRecord.model_validate(values | fields)


def test_chat_and_text_completion_bodies() -> None:
    body = response_body(record())
    assert (body["id"], body["object"], body["created"]) == (
        f"chatcmpl-{JOB_ID}",
        "chat.completion",
        1767225600,
    )
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hi!", "refusal": None}
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    text = response_body(record(JobKind.COMPLETION))
    assert (text["id"], text["object"], text["choices"][0]["text"]) == (
        f"cmpl-{JOB_ID}",
        "text_completion",
        "Hi!",
    )


def test_embedding_bodies_float_and_base64() -> None:
    vectors = [[0.5, -1.0], [0.25, 2.0]]
    embedded = record(JobKind.EMBEDDING, result={"embeddings": vectors})
    plain = response_body(embedded)
    assert [row["embedding"] for row in plain["data"]] == vectors
    assert plain["usage"] == {"prompt_tokens": 3, "total_tokens": 5}
    packed = response_body(embedded, as_base64=True)["data"][1]["embedding"]
    assert list(struct.unpack("<2f", base64.b64decode(packed))) == [0.25, 2.0]
    assert encode_vector([]) == ""


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("stop", "stop"),
        ("length", "length"),
        (None, "stop"),
        ("cancelled", "stop"),
        ("eos", "stop"),
    ],
)
def test_finish_reasons(reason: str | None, expected: str) -> None:
    assert finish_reason(reason) == expected


def test_chat_chunks_with_usage() -> None:
    shapes = ChunkShapes(record(), include_usage=True)
    opening = shapes.opening()
    assert opening is not None and opening["object"] == "chat.completion.chunk"
    assert opening["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert opening["usage"] is None
    assert shapes.delta("He")["choices"][0]["delta"] == {"content": "He"}
    finish = shapes.finish("stop")["choices"][0]
    assert (finish["delta"], finish["finish_reason"]) == ({}, "stop")
    usage = shapes.usage(record().usage)
    assert usage is not None and usage["choices"] == [] and usage["usage"]["total_tokens"] == 5


def test_completion_chunks_without_usage() -> None:
    shapes = ChunkShapes(record(JobKind.COMPLETION), include_usage=False)
    assert shapes.opening() is None and shapes.usage(None) is None
    assert "usage" not in shapes.delta("x")
    assert shapes.delta("x")["choices"][0] == {
        "index": 0,
        "text": "x",
        "logprobs": None,
        "finish_reason": None,
    }
    assert shapes.finish("length")["choices"][0]["text"] == ""


def test_model_list_each_name_once() -> None:
    listed = model_list(["a", "b", "a"], 5)
    assert listed["object"] == "list"
    assert [(m["id"], m["object"], m["created"]) for m in listed["data"]] == [
        ("a", "model", 5),
        ("b", "model", 5),
    ]


OUTCOMES: list[tuple[JobStatus, dict[str, Any] | None, int, str]] = [
    (
        JobStatus.FAILED,
        {"code": "context_length_exceeded", "message": "long"},
        400,
        "context_length_exceeded",
    ),
    (JobStatus.FAILED, {"code": "model_not_found", "message": "gone"}, 404, "model_not_found"),
    (
        JobStatus.DEAD_LETTERED,
        {"code": "retries_exhausted", "message": "x"},
        500,
        "retries_exhausted",
    ),
    (JobStatus.FAILED, {"code": "runtime_unavailable", "message": "x"}, 503, "runtime_unavailable"),
    (JobStatus.CANCELLED, None, 409, "cancelled"),
    (JobStatus.EXPIRED, {"code": "expired", "message": "late"}, 504, "expired"),
]


@pytest.mark.parametrize(("status", "error", "http", "code"), OUTCOMES)
def test_jobs_without_an_answer(
    status: JobStatus, error: dict[str, Any] | None, http: int, code: str
) -> None:
    ended = record(status=status, error=error, result=None)
    problem = outcome_error(ended)
    assert problem is not None and outcome_status(ended) == http
    body = openai_error(problem, http)["error"]
    assert body["code"] == code and JOB_ID in body["message"]
    assert outcome_error(record()) is None


ERRORS: list[tuple[GenqError, int, str | None, str, str]] = [
    (Unauthorized("no key"), 401, None, "authentication_error", "invalid_api_key"),
    (
        RateLimited("slow", retry_after_seconds=1),
        429,
        None,
        "rate_limit_error",
        "rate_limit_exceeded",
    ),
    (UnsupportedParam("n", "no"), 400, "n", "invalid_request_error", "unsupported_parameter"),
    (
        GenqError("boom", code=ErrorCode.BROKER_UNAVAILABLE),
        503,
        None,
        "server_error",
        "broker_unavailable",
    ),
]


@pytest.mark.parametrize(("error", "status", "param", "kind", "code"), ERRORS)
def test_error_shape(
    error: GenqError, status: int, param: str | None, kind: str, code: str
) -> None:
    body = openai_error(error, status, param)
    assert body == {"error": {"message": error.message, "type": kind, "param": param, "code": code}}
