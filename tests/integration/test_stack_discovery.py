"""Commands in another shell find the stack `genq up` started, or say at once they cannot.

The stack here is a real Redis on a non-default port and a real worker against the fake
runtime, recorded in the default data dir of a HOME of its own the way `genq up` records
itself (``genq.stack_file``). The `genq` commands run as subprocesses with no ``GENQ_*``
variable at all, like a user's second shell.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from genq.settings import Settings
from genq.stack_file import write_stack_file
from producers import GenqClient
from schemas import BrokerUnavailable, JobStatus
from tests.fakes.runtime_server import FakeRuntime
from tests.support import GenqProcess, free_port
from tests.support.environment import process_env
from tests.support.processes import REPO_ROOT

pytestmark = pytest.mark.integration

STACK_MODEL = "stack-model"  # the only model the fake serves here: a job given another fails
# "Within a few seconds": the broker check's 2 s timeouts plus the interpreter's start (about
# 1.5 s, 3 s on a busy machine); the issue's own bound for a Redis dying mid-wait is 10 s.
UNREACHABLE_LIMIT_SECONDS = 10.0


@dataclass
class RecordedStack:
    home: Path
    env: dict[str, str]  # what the stack's components run with


def _shell_env(home: Path, **genq: str) -> dict[str, str]:
    """A second shell's environment: no GENQ_* variable unless given, HOME as given."""
    return process_env({"HOME": str(home), "PYTHONUNBUFFERED": "1", **genq})


def _genq(
    argv: list[str], env: dict[str, str], timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "genq", *argv],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def recorded_stack(
    tmp_path: Path,
    stack_env: dict[str, str],
    fake_runtime: FakeRuntime,
    start_genq: Callable[..., GenqProcess],
) -> RecordedStack:
    fake_runtime.configure(known_models=[STACK_MODEL])
    home = tmp_path / "home"
    data_dir = home / ".local" / "share" / "genq"  # the default data dir under that HOME
    env = {
        **stack_env,
        "GENQ_DATA_DIR": str(data_dir),
        "GENQ_RUNTIME_URL": fake_runtime.url,
        "GENQ_DEFAULT_MODEL": STACK_MODEL,
    }
    assert not env["GENQ_REDIS_URL"].startswith("redis://127.0.0.1:6379")
    worker = start_genq(["worker", "--name", "llm"], env, name="worker")
    worker.wait_for_log("ready.", timeout=30)
    # What `genq up` does once its plan is decided; the worker stands in for its supervisor.
    write_stack_file(data_dir, env, worker.pid)
    return RecordedStack(home, env)


def test_submit_wait_in_another_shell_reaches_the_stack_and_its_model(
    recorded_stack: RecordedStack,
) -> None:
    result = _genq(
        ["submit", "Name three colours", "--wait", "--timeout", "60"],
        _shell_env(recorded_stack.home),
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["status"] == JobStatus.SUCCEEDED.value, record
    assert record["model"] == STACK_MODEL


def test_client_built_from_plain_settings_uses_the_running_stack(
    recorded_stack: RecordedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(recorded_stack.home))
    settings = Settings()  # the README's GenqClient(Settings())
    assert settings.redis_url == recorded_stack.env["GENQ_REDIS_URL"]
    with GenqClient(settings) as client:
        record = client.submit({"kind": "chat", "messages": [{"role": "user", "content": "hi"}]})
        assert record.model == STACK_MODEL
        assert client.wait(record.id, timeout=60).status is JobStatus.SUCCEEDED


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) and never answers: a hung Redis."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"


@pytest.fixture(params=["refused", "silent"])
def unreachable_url(request: pytest.FixtureRequest) -> str:
    if request.param == "silent":
        url: str = request.getfixturevalue("silent_broker")
        return url
    return f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there


@pytest.mark.parametrize(
    "argv",
    [["submit", "hello"], ["submit", "hello", "--wait"], ["stats"]],
    ids=["submit", "submit-wait", "stats"],
)
def test_unreachable_broker_is_one_line_within_seconds(
    argv: list[str], unreachable_url: str, tmp_data_dir: Path, tmp_path: Path
) -> None:
    env = _shell_env(
        tmp_path / "home", GENQ_REDIS_URL=unreachable_url, GENQ_DATA_DIR=str(tmp_data_dir)
    )
    started = time.monotonic()
    result = _genq(argv, env, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    error = json.loads(lines[0])["error"]
    assert error["code"] == "broker_unavailable"
    assert unreachable_url in error["message"]
    assert result.stdout == ""
    assert elapsed < UNREACHABLE_LIMIT_SECONDS, f"took {elapsed:.1f} s"


@pytest.mark.parametrize(
    "fleet_dispatch",
    [
        pytest.param(False, id="direct"),  # GENQ_FLEET_DISPATCH=false: the broker publish
        # The default: the job goes into the fleet's backlog in the same Redis (whose client
        # reads with the producers' socket timeout).
        pytest.param(True, id="fleet"),
    ],
)
def test_client_publish_to_a_silent_broker_fails_within_seconds(
    silent_broker: str, tmp_data_dir: Path, fleet_dispatch: bool
) -> None:
    settings = Settings(
        redis_url=silent_broker, data_dir=tmp_data_dir, fleet_dispatch=fleet_dispatch
    )
    chat = {"kind": "chat", "messages": [{"role": "user", "content": "hi"}]}
    pool = ThreadPoolExecutor(max_workers=1)  # a hung publish must fail the test, not hang it
    try:
        with GenqClient(settings) as client:
            started = time.monotonic()
            attempt = pool.submit(client.submit, chat)
            with pytest.raises(BrokerUnavailable):
                attempt.result(timeout=UNREACHABLE_LIMIT_SECONDS)
            assert time.monotonic() - started < UNREACHABLE_LIMIT_SECONDS
            assert client.store.count_queued("default") == 0  # refused whole: nothing accepted
    finally:
        pool.shutdown(wait=False)
