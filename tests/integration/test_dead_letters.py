"""Dead-letter operations and retention, through the real CLI, store and broker."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest

from genq.store import utcnow
from genq.store.retention import purge_expired
from schemas import JobStatus
from tests.fakes.runtime_server import FakeRuntime, Fault
from tests.integration.conftest import Stack
from tests.support.environment import process_env

pytestmark = pytest.mark.integration

CHAT = {"messages": [{"role": "user", "content": "x"}]}


def genq(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "genq", *args],
        env=process_env(stack.env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _dead_job(stack: Stack, fake_runtime: FakeRuntime) -> str:
    fake_runtime.fail_next.extend([Fault.status(503)] * 4)
    client = stack.client()
    job = client.submit(CHAT).id
    assert client.wait(job, timeout=30).status is JobStatus.DEAD_LETTERED
    return job


def test_list_show_requeue(stack: Stack, fake_runtime: FakeRuntime) -> None:
    stack.worker()
    job = _dead_job(stack, fake_runtime)
    listed = json.loads(genq(stack, "dlq", "list", "--json").stdout)
    assert [d["job_id"] for d in listed] == [job]
    assert listed[0]["reason"] == "retries_exhausted" and listed[0]["attempts"] == 4
    shown = json.loads(genq(stack, "dlq", "show", job).stdout)
    assert shown["error"]["code"] == "retries_exhausted"
    client = stack.client()
    assert client.redis.llen("genq.dead_letter") == 1
    out = genq(stack, "dlq", "requeue", listed[0]["id"])
    assert out.returncode == 0, out.stderr
    done = client.wait(job, timeout=20)
    assert done.status is JobStatus.SUCCEEDED and done.attempts == 1
    assert client.redis.llen("genq.dead_letter") == 0
    assert json.loads(genq(stack, "dlq", "list", "--json").stdout) == []
    reasons = [h.reason or "" for h in client.get(job, history=True).history or []]
    assert any(r.startswith("requeued from the dead-letter queue by cli:") for r in reasons)


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["dlq", "requeue", str(uuid.uuid4())], "not_found"),
        (["dlq", "purge", str(uuid.uuid4())], "not_found"),
        (["dlq", "show", "not-an-id"], "not_found"),
        (["dlq", "requeue"], "invalid_request"),
        (["dlq", "purge", "--all", "x"], "invalid_request"),
    ],
)
def test_bad_dlq_commands_change_nothing(stack: Stack, args: list[str], code: str) -> None:
    out = genq(stack, *args)
    assert out.returncode != 0
    assert json.loads(out.stderr.strip().splitlines()[-1])["error"]["code"] == code


def test_requeue_or_purge_of_a_live_job_is_refused(stack: Stack, fake_runtime: FakeRuntime) -> None:
    client = stack.client()
    job = client.submit(CHAT).id  # no worker: stays queued
    for verb in ("requeue", "purge"):
        out = genq(stack, "dlq", verb, job)
        assert out.returncode == 1
        error = json.loads(out.stderr.strip().splitlines()[-1])["error"]
        assert error["code"] in {"conflict", "not_found"}
    assert client.get(job).status is JobStatus.QUEUED


def test_purge_removes_store_row_and_broker_copy(stack: Stack, fake_runtime: FakeRuntime) -> None:
    stack.worker()
    job = _dead_job(stack, fake_runtime)
    out = genq(stack, "dlq", "purge", "--all")
    assert out.returncode == 0, out.stderr
    client = stack.client()
    assert client.redis.llen("genq.dead_letter") == 0
    assert client.get(job).status is JobStatus.DEAD_LETTERED  # the record stays


def test_retention_purges_only_old_finished_jobs(stack: Stack, fake_runtime: FakeRuntime) -> None:
    stack.worker()
    client = stack.client()
    done = client.submit(CHAT).id
    client.wait(done, timeout=20)
    other = client.submit({**CHAT, "lane": "batch"}).id
    client.wait(other, timeout=20)
    purged, letters = purge_expired(
        client.store.engine,
        now=utcnow() + timedelta(days=8),
        finished_after_seconds=7 * 86400,
        dead_letter_after_seconds=30 * 86400,
    )
    assert purged == 2 and letters == []
    assert client.store.get(done) is None and client.store.get(other) is None


def test_retention_never_touches_unfinished_jobs(stack: Stack) -> None:
    client = stack.client()
    job = client.submit(CHAT).id  # no worker: queued forever
    purged, _ = purge_expired(
        client.store.engine,
        now=utcnow() + timedelta(days=365),
        finished_after_seconds=1,
        dead_letter_after_seconds=1,
    )
    assert purged == 0 and client.get(job).status is JobStatus.QUEUED
