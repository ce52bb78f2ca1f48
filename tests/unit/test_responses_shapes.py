"""``/v1/responses`` bodies -> genq jobs, and job records -> ``Response`` objects and stream
events, checked against the openai SDK's own models: pure tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from openai.types.responses import Response, ResponseItem, ResponseStreamEvent
from pydantic import TypeAdapter

from producers.gateway.openai_requests import param_of
from producers.gateway.responses_events import ResponseEvents
from producers.gateway.responses_marks import MARKER, ResponseMarks, marks_of
from producers.gateway.responses_requests import Previous, input_messages, response_call
from producers.gateway.responses_shapes import (
    handed_on,
    input_items,
    item_page,
    job_id_of,
    response_id,
    response_object,
    response_status,
)
from schemas import InvalidRequest, JobKind, JobRecord, JobStatus

JOB_ID = "3f2b8c1e-0a4d-4e5f-9b6a-7c8d9e0f1a2b"
RESP_ID = "resp_3f2b8c1e0a4d4e5f9b6a7c8d9e0f1a2b"
EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
ITEMS: TypeAdapter[Any] = TypeAdapter(ResponseItem)


def create(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "input": "Say hello.", **fields}


def job_of(body: dict[str, Any]) -> Any:
    return response_call(body, 7, "interactive", None).job


ACCEPTED: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (
        create(),
        {
            "kind": JobKind.CHAT,
            "messages": [{"role": "user", "content": "Say hello."}],
            "priority": 7,
            "lane": "interactive",
            "metadata": {MARKER: ""},
        },
    ),
    (create(max_output_tokens=9, temperature=0.5, top_p=0.9), {"max_tokens": 9, "top_p": 0.9}),
    (
        create(background=True, metadata={"team": "a"}),
        {"metadata": {"team": "a", MARKER: "background"}},
    ),
    (
        create(instructions="Be brief."),
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Say hello."},
            ],
            "metadata": {MARKER: "instructions"},
        },
    ),
    (create(user="u", store=True, tools=[], tool_choice="auto", truncation="disabled"), {}),
    (create(text={"format": {"type": "text"}}, parallel_tool_calls=True, reasoning=None), {}),
]


@pytest.mark.parametrize(("body", "expected"), ACCEPTED)
def test_bodies_genq_honours(body: dict[str, Any], expected: dict[str, Any]) -> None:
    job = job_of(body)
    for name, value in expected.items():
        actual = getattr(job, name)
        if name == "messages":
            actual = [m.model_dump() for m in actual]
        assert actual == value


def test_a_message_list_with_text_parts_and_roles() -> None:
    messages = input_messages(
        [
            {"role": "developer", "content": "Be brief."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}]},
            {
                "type": "message",
                "role": "assistant",
                "id": "msg_1",
                "status": "completed",
                "content": [{"type": "output_text", "text": "b", "annotations": []}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "c"},
                    {"type": "input_text", "text": "d"},
                ],
            },
        ]
    )
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c\nd"},
    ]


IMAGE = {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}
REFUSED: list[tuple[dict[str, Any], str]] = [
    (create(tools=[{"type": "function", "name": "f", "parameters": {}}]), "tools"),
    (create(tool_choice="required"), "tool_choice"),
    (create(text={"format": {"type": "json_object"}}), "text.format"),
    (create(reasoning={"effort": "high"}), "reasoning"),
    (create(previous_response_id=["resp_x"]), "previous_response_id"),
    (create(conversation="conv_1"), "conversation"),
    (create(include=["message.output_text.logprobs"]), "include"),
    (create(truncation="auto"), "truncation"),
    (create(mirostat=2), "mirostat"),
    (create(background="yes"), "background"),
    (create(background=True, store=False), "store"),
    (create(input=""), "input"),
    (create(input=[]), "input"),
    (create(input=[{"role": "user", "content": [IMAGE]}]), "input[0].content[0]"),
    (create(input=[{"type": "function_call_output", "call_id": "c", "output": "x"}]), "input[0]"),
    (create(input=[{"role": "tool", "content": "x"}]), "input[0].role"),
    (create(instructions=["x"]), "instructions"),
    (create(metadata={MARKER: "x"}), "metadata"),
    (create(metadata={f"k{i}": "v" for i in range(16)}), "metadata"),
    (create(max_output_tokens=0), "max_output_tokens"),
    (create(temperature=9), "temperature"),
]


@pytest.mark.parametrize(("body", "param"), REFUSED, ids=[p for _b, p in REFUSED])
def test_what_genq_cannot_honour_names_its_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        job_of(body)
    assert param_of(raised.value) == param


def test_ids_map_to_jobs_and_back() -> None:
    assert response_id(JOB_ID) == RESP_ID
    assert job_id_of(RESP_ID) == JOB_ID
    for bad in ("resp_", "resp_xyz", JOB_ID, "msg_3f2b8c1e0a4d4e5f9b6a7c8d9e0f1a2b", RESP_ID + "0"):
        assert job_id_of(bad) is None


def record(status: JobStatus = JobStatus.SUCCEEDED, **fields: Any) -> JobRecord:
    values: dict[str, Any] = {
        "id": JOB_ID,
        "status": status,
        "kind": JobKind.CHAT,
        "model": "m",
        "lane": "interactive",
        "priority": 7,
        "request": {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hi"},
            ],
            "max_tokens": 2,
            "temperature": 0.5,
        },
        "metadata": {"team": "a", MARKER: "background,instructions"},
        "result": {"text": "Hi!", "finish_reason": "stop"},
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "finished_at": datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC),
    }
    return JobRecord.model_validate(values | fields)


STATUSES: list[tuple[JobRecord, str]] = [
    (record(JobStatus.QUEUED, result=None, usage=None, finished_at=None), "queued"),
    (record(JobStatus.RUNNING, result=None, usage=None, finished_at=None), "in_progress"),
    (record(), "completed"),
    (record(result={"text": "Hi", "finish_reason": "length"}), "incomplete"),
    (record(JobStatus.CANCELLED, result={"text": "H"}), "cancelled"),
    (
        record(
            JobStatus.FAILED,
            result=None,
            error={"code": "context_length_exceeded", "message": "long"},
        ),
        "failed",
    ),
    (record(JobStatus.EXPIRED, result=None, usage=None), "failed"),
    (record(JobStatus.DEAD_LETTERED, result=None), "failed"),
]


@pytest.mark.parametrize(("job", "status"), STATUSES, ids=[s for _j, s in STATUSES])
def test_every_state_is_a_response_the_sdk_parses(job: JobRecord, status: str) -> None:
    assert response_status(job) == status
    body = response_object(job)
    parsed = Response.model_validate(body)  # the SDK's own model, validated strictly
    assert (parsed.id, parsed.status, parsed.object) == (RESP_ID, status, "response")
    assert parsed.background is True and parsed.instructions == "Be brief."
    assert parsed.metadata == {"team": "a"}
    assert (parsed.max_output_tokens, parsed.temperature) == (2, 0.5)


def test_completed_incomplete_and_failed_details() -> None:
    done = Response.model_validate(response_object(record()))
    assert done.output_text == "Hi!" and done.error is None and done.incomplete_details is None
    assert done.usage is not None and (done.usage.input_tokens, done.usage.total_tokens) == (3, 5)
    assert done.completed_at == 1767225602
    cut = Response.model_validate(
        response_object(record(result={"text": "Hi", "finish_reason": "length"}))
    )
    assert (
        cut.incomplete_details is not None and cut.incomplete_details.reason == "max_output_tokens"
    )
    assert cut.output_text == "Hi" and cut.output[0].status == "incomplete"  # type: ignore[union-attr]
    failed = record(
        JobStatus.FAILED,
        result=None,
        error={"code": "context_length_exceeded", "message": "too long"},
    )
    error = Response.model_validate(response_object(failed)).error
    assert error is not None and error.code == "invalid_prompt" and "too long" in error.message
    queued = Response.model_validate(response_object(record(), "queued"))
    assert queued.status == "queued" and queued.output == [] and queued.usage is None


def test_every_stream_event_is_one_the_sdk_parses() -> None:
    job = record()
    shapes = ResponseEvents(job)
    payloads = [
        shapes.state("response.created", "queued"),
        shapes.state("response.queued", "queued"),
        shapes.state("response.in_progress", "in_progress"),
        shapes.item_added(),
        shapes.part_added(),
        shapes.delta("Hi"),
        shapes.text_done("Hi!"),
        shapes.part_done("Hi!"),
        shapes.item_done("Hi!", "completed"),
        ResponseEvents.ending(job),
        ResponseEvents.ending(record(JobStatus.CANCELLED, result=None)),
        ResponseEvents.ending(record(result={"text": "Hi", "finish_reason": "length"})),
        ResponseEvents.error("retried"),
    ]
    types = []
    for number, payload in enumerate(payloads):
        event = EVENTS.validate_python({**payload, "sequence_number": number})
        assert event.type == payload["type"] and event.sequence_number == number
        types.append(event.type)
    assert types[-4:] == ["response.completed", "response.failed", "response.incomplete", "error"]


def test_marks_round_trip() -> None:
    assert marks_of({}) is None
    assert marks_of({MARKER: ""}) == ResponseMarks()
    marks = ResponseMarks(background=True, instructions=True, previous=RESP_ID, context=3)
    assert marks_of({MARKER: marks.encode()}) == marks
    assert marks_of({MARKER: "background,instructions"}) == ResponseMarks(True, True)


def test_a_previous_response_goes_before_the_input_without_its_instructions() -> None:
    first = record()  # instructions "Be brief.", user "hi", answer "Hi!"
    context = handed_on(first)
    assert context == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hi!"}]
    call = response_call(
        create(input="again", instructions="Be kind.", previous_response_id=RESP_ID),
        7,
        "interactive",
        None,
        Previous(RESP_ID, context),
    )
    messages = [m.model_dump() for m in call.job.messages or []]
    assert messages == [
        {"role": "system", "content": "Be kind."},
        *context,
        {"role": "user", "content": "again"},
    ]
    second = record(request={"messages": messages}, metadata=call.job.metadata)
    body = Response.model_validate(response_object(second))
    assert (body.previous_response_id, body.instructions) == (RESP_ID, "Be kind.")
    assert [i["content"][0]["text"] for i in input_items(second)] == ["again"]
    # A chain hands on everything before it, still without anybody's instructions.
    third = handed_on(record(request={"messages": messages}, metadata=call.job.metadata))
    assert [m["content"] for m in third] == ["hi", "Hi!", "again", "Hi!"]


def test_input_items_leave_out_the_instructions_and_page() -> None:
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "again"},
    ]
    items = input_items(record(request={"messages": conversation}))
    parsed = [ITEMS.validate_python(item) for item in items]  # the SDK's own models
    assert [(i.role, i.content[0].text) for i in parsed] == [
        ("user", "hi"),
        ("assistant", "Hello."),
        ("user", "again"),
    ]
    assert len({i.id for i in parsed}) == 3
    first = item_page(items, after=None, limit=2, ascending=False)
    assert [i["content"][0]["text"] for i in first["data"]] == ["again", "Hello."]
    assert first["has_more"] and first["last_id"] == items[1]["id"]
    rest = item_page(items, after=first["last_id"], limit=2, ascending=False)
    assert [i["content"][0]["text"] for i in rest["data"]] == ["hi"] and not rest["has_more"]
    with pytest.raises(InvalidRequest) as raised:
        item_page(items, after="msg_nope", limit=2, ascending=True)
    assert param_of(raised.value) == "after"
    no_instructions = record(metadata={MARKER: ""}, request={"messages": conversation})
    assert len(input_items(no_instructions)) == 4
