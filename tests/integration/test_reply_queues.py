"""Reply queues as docs/replies.md describes them: its examples run against a real stack, and
a consumer that knows only Redis and JSON reads the queue by the documented wire format."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from schemas import JobRecord, JobStatus
from tests.integration.conftest import Stack
from tests.support import eventually
from tests.support.environment import process_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
QUEUE = "billing.replies"
CHAT = {"messages": [{"role": "user", "content": "hi"}], "reply_to": QUEUE}


def run_example(stack: Stack, name: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        env=process_env({**stack.env, "PYTHONPATH": str(ROOT)}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_replies_example_gets_one_reply_per_job(stack: Stack) -> None:
    stack.worker()
    out = run_example(stack, "replies.py").splitlines()
    assert out[-1] == "3 of 3 replies", out
    assert len(out) == 4 and all(" succeeded " in line for line in out[:3]), out


def test_a_foreign_consumer_reads_the_documented_wire_format(stack: Stack) -> None:
    stack.worker()
    client = stack.client()
    ok = client.submit(CHAT).id
    failed = client.submit({**CHAT, "model": "missing"}).id
    records = {job: client.wait(job, timeout=30) for job in (ok, failed)}
    assert records[ok].status is JobStatus.SUCCEEDED
    assert records[failed].status is JobStatus.FAILED
    broker = redis.Redis.from_url(stack.env["GENQ_REDIS_URL"])
    assert eventually(lambda: broker.llen(QUEUE) == 2, timeout=10)
    # A Redis list named as the queue, nothing else under its name (no binding, no priorities).
    assert broker.type(QUEUE) == b"list"
    assert broker.keys(f"*{QUEUE}*") == [QUEUE.encode()]

    for raw in reversed(broker.lrange(QUEUE, 0, -1)):  # LPUSHed: the oldest is on the right
        message = json.loads(raw)
        assert set(message) == {"body", "content-encoding", "content-type", "headers", "properties"}
        assert message["content-type"] == "application/json"
        assert message["content-encoding"] == "utf-8"
        properties = message["properties"]
        assert properties["delivery_mode"] == 2 and properties["priority"] == 0
        assert properties["delivery_info"] == {"exchange": "", "routing_key": QUEUE}
        assert properties["body_encoding"] == "base64"
        record = json.loads(base64.b64decode(message["body"]).decode("utf-8"))
        assert message["headers"] == {"genq-job-id": record["id"]}
        assert set(record) == set(JobRecord.model_fields)
        assert record == records[record["id"]].model_dump(mode="json")
        assert record["history"] is None

    out = run_example(stack, "replies_without_genq.py", QUEUE, stack.env["GENQ_REDIS_URL"], "1")
    lines = out.splitlines()
    assert [line.split()[:2] for line in lines] == [[ok, "succeeded"], [failed, "failed"]]
    assert broker.llen(QUEUE) == 0


def test_a_reply_is_delivered_again_until_acked(stack: Stack) -> None:
    """What docs/replies.md says of ``GenqClient.replies()``: the record the loop broke on is
    not acked, so the next ``replies()`` delivers it again; the ones before it are gone."""
    stack.worker()
    client = stack.client()
    jobs = [client.submit(CHAT).id for _ in range(2)]
    for job in jobs:
        client.wait(job, timeout=30)
    broker = redis.Redis.from_url(stack.env["GENQ_REDIS_URL"])
    assert eventually(lambda: broker.llen(QUEUE) == 2, timeout=10)
    first = []
    for record in client.replies(QUEUE, timeout=2):
        first.append(record.id)
        if len(first) == 2:
            break
    again = [record.id for record in client.replies(QUEUE, timeout=1)]
    assert sorted(first) == sorted(jobs) and again == first[-1:]
