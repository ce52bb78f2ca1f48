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
