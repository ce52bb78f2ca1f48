"""A ``GENQ_*`` variable that is no setting is ignored by pydantic-settings: genq names it at
start, with the setting that was probably meant."""

from __future__ import annotations

import pytest

from genq.settings import Settings, unknown_env_warnings


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("GENQ_STORE_URL", "GENQ_DATABASE_URL"),  # what docs/operations.md used to say
        ("GENQ_REDIS", "GENQ_REDIS_URL"),
        ("GENQ_WEBHOOK_ALLOWLIST", "GENQ_WEBHOOK_ALLOW"),
        ("GENQ_RUNTIME_SLOT", "GENQ_RUNTIME_SLOTS"),
        ("GENQ_LOGLEVEL", "GENQ_LOG_LEVEL"),
        ("genq_adminkey", "GENQ_ADMIN_KEY"),
        ("GENQ_DEFAULT_MAX_TOKEN", "GENQ_DEFAULT_MAX_TOKENS"),
    ],
)
def test_an_unknown_variable_names_the_closest_setting(name: str, meant: str) -> None:
    [message] = unknown_env_warnings({name: "x", "PATH": "/usr/bin"})
    assert name in message and "ignored" in message
    assert message.endswith(f"did you mean {meant}?")


def test_nothing_like_a_setting_gets_no_guess() -> None:
    [message] = unknown_env_warnings({"GENQ_XYZZY": "1"})
    assert "GENQ_XYZZY" in message and "did you mean" not in message


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"PATH": "/bin", "GENQUEUE": "1", "MY_GENQ_URL": "x"},
        {f"GENQ_{name.upper()}": "x" for name in Settings.model_fields},
        {"genq_redis_url": "x", "GENQ_BENCH_RUNTIME": "fake"},
    ],
    ids=["empty", "not-genq", "every-setting", "lower-case-and-benchmark"],
)
def test_real_settings_and_other_variables_are_quiet(environ: dict[str, str]) -> None:
    assert unknown_env_warnings(environ) == []


def test_one_message_per_unknown_variable_without_its_value() -> None:
    messages = unknown_env_warnings({"GENQ_STORE_URL": "postgresql://u:secret@h/db", "GENQ_A": ""})
    assert len(messages) == 2
    assert not any("secret" in m for m in messages)
