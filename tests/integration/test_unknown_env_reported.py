"""Each entry point names a mistyped ``GENQ_*`` variable once at start, in its own log (worker,
beat, gateway) or on stderr (the CLI, ``genq up``), instead of silently ignoring it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.integration.conftest import Stack
from tests.integration.gateway.conftest import gateway_env, wait_until_serving
from tests.support import GenqProcess
from tests.support.environment import process_env

pytestmark = pytest.mark.integration

# The name docs/operations.md once gave for the PostgreSQL store.
MISTYPED = {"GENQ_STORE_URL": "postgresql+psycopg://genq:secret@127.0.0.1:9/genq"}
WARNING = "GENQ_STORE_URL is not a genq setting and is ignored; did you mean GENQ_DATABASE_URL?"


@pytest.mark.parametrize(
    "argv",
    [("dlq", "list"), ("db", "current"), ("up", "--help")],
    ids=["dlq-list", "db-current", "up"],
)
def test_the_cli_warns_once(stack: Stack, argv: tuple[str, ...]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "genq", *argv],
        env=process_env({**stack.env, **MISTYPED}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(WARNING) == 1, done.stderr
    assert "secret" not in done.stderr + done.stdout
    clean = subprocess.run(
        [sys.executable, "-m", "genq", *argv],
        env=process_env(stack.env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "GENQ_STORE_URL" not in clean.stderr


def logged_once(process: GenqProcess) -> bool:
    text = process.log_text()
    return text.count(WARNING) == 1 and "secret" not in text


def test_worker_beat_and_gateway_warn_once_in_their_log(stack: Stack) -> None:
    stack.env.update(MISTYPED)
    worker = stack.worker()  # waits for "ready.", logged after the warning
    beat = stack.beat()
    beat.wait_for_log("beat: Starting")
    env = gateway_env(stack.env)
    gateway = stack.start_genq(["gateway"], env, name="gateway")
    wait_until_serving(f"http://127.0.0.1:{env['GENQ_GATEWAY_PORT']}", gateway)
    for process in (worker, beat, gateway):
        assert logged_once(process), process.log_tail()
