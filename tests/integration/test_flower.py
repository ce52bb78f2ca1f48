"""A real Flower process shows the jobs genq ran: in its API and on its tasks page."""

from __future__ import annotations

import ast
import secrets
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from genq.celery_app import create_app
from schemas import JobStatus
from tests.fakes.runtime_server import FakeRuntime
from tests.integration.conftest import Stack
from tests.support import GenqProcess, eventually, free_port
from tests.support.history import recovered_by
from tests.support.processes import REPO_ROOT

pytestmark = pytest.mark.integration

ARTIFACTS = REPO_ROOT / "artifacts"
PROMPT = "a prompt that must not travel in task arguments"
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


class Flower:
    def __init__(self, stack: Stack, start_genq: Callable[..., GenqProcess]) -> None:
        self.port = free_port()
        self.auth = ("ops", secrets.token_urlsafe(12))
        env = {
            **stack.env,
            "GENQ_FLOWER_PORT": str(self.port),
            "GENQ_FLOWER_BASIC_AUTH": ":".join(self.auth),
        }
        self.process = start_genq(["flower"], env, name="flower")
        self.url = f"http://127.0.0.1:{self.port}"
        up = eventually(lambda: self._healthy() or not self.process.running, 30, interval=0.2)
        assert up and self.process.running, f"flower not up:\n{self.process.log_tail()}"

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthcheck", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, auth=self.auth, timeout=10)

    def wait_for_task(self, job_id: str, state: str, timeout: float = 30.0) -> dict[str, Any]:
        tasks: dict[str, Any] = {}

        def shown() -> bool:
            tasks.update(self.get("/api/tasks").json())
            task = tasks.get(job_id)
            return task is not None and task["state"] == state

        assert eventually(shown, timeout, interval=0.3), f"flower never showed {job_id} {state}"
        task: dict[str, Any] = tasks[job_id]
        return task


def test_flower_lists_a_job_genq_ran(stack: Stack, start_genq: Callable[..., GenqProcess]) -> None:
    flower = Flower(stack, start_genq)
    stack.worker()
    client = stack.client()
    record = client.submit({"messages": [{"role": "user", "content": PROMPT}], "priority": 8})
    assert client.wait(record.id, timeout=30).status is JobStatus.SUCCEEDED

    task = flower.wait_for_task(record.id, "SUCCESS")  # the Celery task id is the job id
    assert task["name"] == "genq.generate"
    assert record.id in task["kwargs"]  # {'job_id': '…', 'tenant': …}: readable, no request
    assert PROMPT not in str(task)
    assert httpx.get(f"{flower.url}/api/tasks", timeout=10).status_code == 401  # basic auth

    shown = _tasks_page(flower, "flower-tasks")
    assert record.id in shown and "genq.generate" in shown


def test_flower_counts_every_priority_list(
    stack: Stack, start_genq: Callable[..., GenqProcess]
) -> None:
    # Run as `genq flower` it knows the ten priority lists; genq's own metrics remain the
    # truth for depth (Flower never sees retries waiting out a countdown, jobs waiting in the
    # fleet's backlog for a slot, or unacked messages). Three slots: the dispatcher releases
    # the three jobs into the broker at once, one into each priority's list.
    stack.env["GENQ_RUNTIME_SLOTS"] = "3"
    flower = Flower(stack, start_genq)
    client = stack.client()
    for priority in (9, 5, 0):
        client.submit({"messages": [{"role": "user", "content": "hi"}], "priority": priority})
    lengths = flower.get("/api/queues/length").json()["active_queues"]
    assert {"name": "genq.interactive", "messages": 3} in lengths


def test_flower_finds_a_job_by_its_tenant_lane_and_priority(
    stack: Stack, start_genq: Callable[..., GenqProcess]
) -> None:
    flower = Flower(stack, start_genq)
    stack.worker()
    acme = stack.client(tenant="acme-labs").submit({**CHAT, "priority": 8, "lane": "batch"})
    other = stack.client(tenant="globex").submit(CHAT)
    task = flower.wait_for_task(acme.id, "SUCCESS")
    flower.wait_for_task(other.id, "SUCCESS")
    # One message per job: its headers carry what Flower shows (Celery's kwargsrepr).
    assert ast.literal_eval(task["kwargs"]) == {
        "job_id": acme.id,
        "tenant": "acme-labs",
        "lane": "batch",
        "priority": 8,
    }
    for query in ("kwargs:tenant=acme-labs", "acme-labs", "kwargs:priority=8", "kwargs:lane=batch"):
        assert set(flower.get("/api/tasks", search=query).json()) == {acme.id}, query
    # The tasks page's search box asks this endpoint.
    page = flower.get(
        "/tasks/datatable",
        **{
            "draw": 1,
            "start": 0,
            "length": 15,
            "search[value]": "acme-labs",
            "order[0][column]": 0,
            "columns[0][data]": "received",
            "order[0][dir]": "desc",
        },
    ).json()
    assert [row["uuid"] for row in page["data"]] == [acme.id]


def test_the_sweep_runs_but_flower_lists_no_sweep(
    stack: Stack, start_genq: Callable[..., GenqProcess], fake_runtime: FakeRuntime
) -> None:
    flower = Flower(stack, start_genq)  # watching from the start: it would see every task
    fake_runtime.configure(tokens=[f"t{i} " for i in range(40)], token_delay_seconds=0.25)
    doomed = stack.worker("--lanes", "interactive", name="doomed")
    stack.ops_worker()
    stack.beat()
    client = stack.client()
    lapsed = client.submit(CHAT).id
    assert eventually(lambda: client.get(lapsed).status is JobStatus.RUNNING, timeout=20)
    doomed.kill()  # no hand-back, and the broker would redeliver only after hours
    fake_runtime.configure(token_delay_seconds=0.0)
    stack.worker("--lanes", "interactive", name="survivor")
    assert client.wait(lapsed, timeout=30).status is JobStatus.SUCCEEDED
    [recovered_by_node] = recovered_by(client.store, lapsed)  # the sweep requeued it
    # A later sweep: a job on a lane nobody serves expires once its deadline passes.
    deadline = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    overdue = client.submit({**CHAT, "lane": "batch", "deadline": deadline}).id
    assert eventually(lambda: client.get(overdue).status is JobStatus.EXPIRED, timeout=15)

    flower.wait_for_task(lapsed, "SUCCESS")  # Flower has caught up with the workers' events
    names = {task["name"] for task in flower.get("/api/tasks").json().values()}
    assert names == {"genq.generate"}
    assert flower.get("/api/task/types").json()["task-types"] == ["genq.generate"]
    assert recovered_by_node.startswith("beat-")  # swept by beat itself, not by a task


def _tasks_page(flower: Flower, name: str) -> str:
    """Screenshot Flower's tasks page into artifacts/ with headless Chromium; return its DOM."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "Chromium is missing: run `make install` (Debian package `chromium`)"
    user, password = flower.auth
    url = f"http://{user}:{password}@127.0.0.1:{flower.port}/tasks"
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / f"{name}.png"
    screenshot.unlink(missing_ok=True)
    common = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--window-size=1800,700", "--virtual-time-budget=5000",
    ]  # fmt: skip
    _chromium([*common, f"--screenshot={screenshot}", url])
    assert screenshot.stat().st_size > 10_000, "the screenshot is blank"
    # The same page after its scripts ran: what the screenshot shows, as text.
    return _chromium([*common, "--dump-dom", url])


def _chromium(argv: list[str]) -> str:
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=90, check=False, cwd=Path.cwd()
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_a_worker_answers_what_flower_asks_it(stack: Stack) -> None:
    """Flower asks each worker for its stats, config, queues and tasks at start; every reply
    must encode as JSON (genq's transport reached the stats as a class: an EncodeError in the
    worker's log, and Flower without the worker's stats)."""
    worker = stack.worker()
    app = create_app(stack.settings)
    inspector = app.control.inspect(timeout=10, limit=1)  # one worker: done at its reply
    replies = {
        name: getattr(inspector, name)()
        for name in ("stats", "conf", "active_queues", "registered", "active", "reserved")
    }
    for name, reply in replies.items():
        assert reply and len(reply) == 1, (name, reply)
    (stats,) = replies["stats"].values()
    assert str(stats["broker"]["transport"]).endswith(":Transport")
    assert "Control command error" not in worker.log_text()
    app.close()
