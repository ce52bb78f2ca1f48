"""Log processors: secrets are masked wherever they appear, content stays out above DEBUG."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from genq.logs import (
    REDACTED,
    bind_job_context,
    clear_job_context,
    configure_logging,
    drop_content,
    redact_secrets,
    redact_text,
)
from genq.settings import Settings


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (
            "signing with whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ),
        ("key genq_4f9a1c2d3e4b5a6978877665 used", "genq_4f9a1c2d3e4b5a6978877665"),
        ("Authorization: Bearer sk-abc.def-ghi", "sk-abc.def-ghi"),
        ("broker redis://:hunter2@127.0.0.1:6379/0", "hunter2"),
        ("store postgresql+psycopg://genq:pw123@db:5432/genq", "pw123"),
    ],
)
def test_token_shaped_text_is_masked(text: str, secret: str) -> None:
    masked = redact_text(text)
    assert secret not in masked
    assert REDACTED in masked


@pytest.mark.parametrize(
    "text",
    [
        "job 4b0e7c1e-3c2a-4a8e-9d55-0d9c1b7e2f10 succeeded",
        "genq_test_db created",  # too short to be a key
        "connected to redis://127.0.0.1:6379/0",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize(
    ("key", "redacted"),
    [
        ("webhook_secret", True),
        ("api_key", True),
        ("password", True),
        ("Authorization", True),
        ("access_token", True),
        ("key_id", False),
        ("job_id", False),
        ("tenant", False),
    ],
)
def test_secret_named_keys_are_masked(key: str, redacted: bool) -> None:
    out = redact_secrets(None, "info", {"event": "x", key: "value", "nested": {key: "value"}})
    assert (out[key] == REDACTED) is redacted
    assert (out["nested"][key] == REDACTED) is redacted


@pytest.mark.parametrize(("level", "kept"), [("debug", True), ("info", False), ("error", False)])
def test_content_only_at_debug(level: str, kept: bool) -> None:
    out = drop_content(
        None, level, {"event": "x", "level": level, "prompt": "tell me", "text": "hi"}
    )
    assert (out["prompt"] == "tell me") is kept
    assert (out["text"] == "hi") is kept


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """Restores logging after a test that called ``configure_logging``."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield capsys
    clear_job_context()
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)
    structlog.reset_defaults()


def test_stdlib_and_structlog_records_are_json_with_job_context(
    json_logs: pytest.CaptureFixture[str],
) -> None:
    # Configured here, not in the fixture: the handler binds the test's captured stderr.
    configure_logging(Settings(log_level="INFO", log_json=True))
    bind_job_context(job_id="j-1", tenant="acme", lane="batch", attempt=2)
    logging.getLogger("genq.test").info("token %s", "whsec_abcdefghijklmnopqrstuvwxyz")
    structlog.get_logger("genq.test").warning("done", prompt="secret plans", api_key="k")
    err = json_logs.readouterr().err
    lines = [json.loads(line) for line in err.splitlines()]
    assert [line["level"] for line in lines] == ["info", "warning"]
    for line in lines:
        assert (line["job_id"], line["tenant"], line["lane"], line["attempt"]) == (
            "j-1", "acme", "batch", 2,
        )  # fmt: skip
    assert "whsec_" not in lines[0]["event"]
    assert lines[1]["api_key"] == REDACTED
    assert "secret plans" not in json.dumps(lines[1])
