from typing import Any

import pytest

from schemas import InvalidRequest, JobKind, JobRequest
from schemas.validation import parse

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": []}, "body"),
        ({**CHAT, "temperature": 5}, "temperature"),
        ({"kind": "completion", "prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({**CHAT, "unknown_field": 1}, "unknown_field"),
        ({**CHAT, "priority": 12}, "priority"),
        ({**CHAT, "priority": -1}, "priority"),
        ({**CHAT, "top_p": 0}, "top_p"),
        ({**CHAT, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({**CHAT, "webhook_url": "file:///etc/passwd"}, "webhook_url"),
        ({**CHAT, "webhook_url": "not a url"}, "webhook_url"),
        ({**CHAT, "lane": "Bad Lane!"}, "lane"),
        ({**CHAT, "reply_to": "has space"}, "reply_to"),
        ({**CHAT, "metadata": {"k": "v" * 600}}, "metadata.k"),
        ({**CHAT, "expires_in": -1}, "expires_in"),
        ({**CHAT, "deadline": "2026-01-01T00:00:00"}, "body"),
        ({"kind": "completion", "messages": CHAT["messages"]}, "body"),
        ({"kind": "embedding", "input": []}, "input"),
        ({"kind": "embedding", "input": ""}, "input"),
        ({"kind": "nonsense", "prompt": "x"}, "kind"),
        ({**CHAT, "messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({**CHAT, "model": ""}, "model"),
    ],
)
def test_bad_requests_name_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse(JobRequest, body)
    fields = [d["field"] for d in info.value.details]
    assert any(f == field or f.startswith(field) for f in fields), fields
    assert info.value.code.value == "invalid_request"
    assert info.value.to_body()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (CHAT, JobKind.CHAT),
        (
            {"kind": "completion", "prompt": "Once upon", "max_tokens": 8, "stop": "\n"},
            JobKind.COMPLETION,
        ),
        ({"kind": "embedding", "input": ["a", "b"]}, JobKind.EMBEDDING),
        (
            {**CHAT, "priority": 0, "temperature": 0, "seed": 1, "metadata": {"team": "x"}},
            JobKind.CHAT,
        ),
    ],
)
def test_good_requests(body: dict[str, object], kind: JobKind) -> None:
    assert parse(JobRequest, body).kind is kind


def test_public_dump_hides_the_webhook_secret() -> None:
    req = parse(
        JobRequest,
        {**CHAT, "webhook_url": "https://example.com/h", "webhook_secret": "whsec_" + "A" * 24},
    )
    assert "webhook_secret" not in req.public_dump()


INTEGER_FIELDS = ["max_tokens", "top_k", "seed", "priority"]
NUMBER_FIELDS = ["temperature", "top_p", "presence_penalty", "frequency_penalty", "expires_in"]


@pytest.mark.parametrize("value", [True, False], ids=["true", "false"])
@pytest.mark.parametrize("field", INTEGER_FIELDS + NUMBER_FIELDS)
def test_a_boolean_is_not_a_number(field: str, value: bool) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse(JobRequest, {**CHAT, field: value})
    assert [d["field"] for d in info.value.details] == [field]
    assert info.value.code.value == "invalid_request"


@pytest.mark.parametrize("field", INTEGER_FIELDS)
@pytest.mark.parametrize("value", ["1", 1.0], ids=["string", "float"])
def test_an_integer_field_takes_only_json_integers(field: str, value: object) -> None:
    with pytest.raises(InvalidRequest):
        parse(JobRequest, {**CHAT, field: value})


@pytest.mark.parametrize("field", INTEGER_FIELDS + NUMBER_FIELDS)
def test_numbers_in_range_still_pass(field: str) -> None:
    assert getattr(parse(JobRequest, {**CHAT, field: 1}), field) == 1


def test_every_numeric_field_is_in_the_tables() -> None:
    def types(prop: dict[str, Any]) -> set[str]:
        return {prop.get("type", "")} | {t for p in prop.get("anyOf", []) for t in types(p)}

    properties = JobRequest.model_json_schema()["properties"]
    numeric = {name for name, prop in properties.items() if types(prop) & {"integer", "number"}}
    assert numeric == set(INTEGER_FIELDS + NUMBER_FIELDS)
