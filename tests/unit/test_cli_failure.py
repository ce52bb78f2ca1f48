"""Every ``genq`` command fails the same way: one line in the stable error shape on stderr and
an exit code from the one table in docs/operations.md ("Exit codes")."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from genq.cli import app as cli
from genq.cli import failure
from genq.cli.failure import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, exit_code
from schemas import ErrorCode, GenqError, NotFound

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def _documented_table() -> dict[int, str]:
    text = OPERATIONS.read_text()
    section = text[text.index("## Exit codes") :]
    section = section[: section.index("\n## ", 1)]
    rows = re.findall(r"^\|\s*(\d+)\s*\|([^|]*)\|([^|]*)\|\s*$", section, re.M)
    return {int(code): errors for code, _meaning, errors in rows}


def _documented_exit_code(code: ErrorCode) -> int:
    table = _documented_table()
    named = {int(exit_): set(re.findall(r"`([a-z_]+)`", errors)) for exit_, errors in table.items()}
    listed = [exit_ for exit_, codes in named.items() if code.value in codes]
    return listed[0] if listed and "every other" not in table[listed[0]] else EXIT_FAILED


def test_the_documented_table_has_the_codes_the_cli_uses() -> None:
    assert sorted(_documented_table()) == [EXIT_OK, EXIT_FAILED, EXIT_REFUSED]


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda code: code.value)
def test_each_error_code_exits_as_documented(code: ErrorCode) -> None:
    assert exit_code(GenqError("x", code=code)) == _documented_exit_code(code)


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GENQ_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GENQ_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    return tmp_path


def _only_error(stderr: str) -> dict[str, str]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    error: dict[str, str] = json.loads(lines[0])["error"]
    return error


@pytest.mark.parametrize(
    ("argv", "code", "exit_"),
    [
        (["status", "not-a-job-id"], "invalid_request", EXIT_REFUSED),
        (["submit", "--json", "{bad"], "invalid_request", EXIT_REFUSED),
        (["keys", "revoke", "no-such-key"], "not_found", EXIT_FAILED),
        (["dlq", "purge", "--all"], "broker_unavailable", EXIT_FAILED),
        (
            ["webhooks", "endpoints", "add", "--tenant", "t", "--url", "http://10.1.2.3/hook"],
            "webhook_url_refused",
            EXIT_REFUSED,
        ),
    ],
    ids=["bad-id", "bad-json", "unknown-key", "no-broker", "refused-url"],
)
def test_commands_fail_in_one_line_with_the_table_s_exit_code(
    cli_env: Path, argv: list[str], code: str, exit_: int
) -> None:
    if argv[:2] == ["submit", "--json"]:
        (cli_env / "bad.json").write_text(argv[2])
        argv = ["submit", "--json", str(cli_env / "bad.json")]
    result = CliRunner().invoke(cli.app, argv)
    assert result.exit_code == exit_, result.output
    assert _only_error(result.stderr)["code"] == code


def test_fail_prints_the_error_and_exits_with_its_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exited:
        failure.fail(NotFound("no job 42"))
    assert exited.value.exit_code == EXIT_FAILED
    assert _only_error(capsys.readouterr().err) == {
        "code": "not_found",
        "message": "no job 42",
        "details": [],
    }


@pytest.mark.parametrize(
    ("raised", "code", "exit_"),
    [
        (GenqError("bad", code=ErrorCode.INVALID_REQUEST), "invalid_request", EXIT_REFUSED),
        (GenqError("gone", code=ErrorCode.CONFLICT), "conflict", EXIT_FAILED),
        (RuntimeError("surprise"), "internal", EXIT_FAILED),
    ],
)
def test_what_escapes_a_command_is_one_line_with_the_table_s_exit_code(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    cli_env: Path,
    raised: Exception,
    code: str,
    exit_: int,
) -> None:
    def escaping() -> None:
        raise raised

    monkeypatch.setattr(cli, "app", escaping)
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == exit_
    assert _only_error(capsys.readouterr().err)["code"] == code
