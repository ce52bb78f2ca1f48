"""The CLI's tables on an 80-column terminal still show every id whole (the next command needs
it), and ``genq dlq requeue --all`` says how many it requeued, none included."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from genq.dead_letters import list_dead_letters
from genq.store.webhook_log import list_deliveries
from producers.webhook_admin import add_endpoint
from schemas import JobStatus
from tests.fakes.runtime_server import FakeRuntime, Fault
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.integration.conftest import Stack
from tests.support import eventually
from tests.support.environment import process_env

pytestmark = pytest.mark.integration

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
RUNTIME_DOWN_FAULTS = 20
WEBHOOKS = {
    "GENQ_WEBHOOK_ALLOW": "127.0.0.1/32",
    "GENQ_WEBHOOK_SECRET": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
    "GENQ_WEBHOOK_RETRY_SCHEDULE_SECONDS": "0",
}


def genq(stack: Stack, *args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "genq", *args],
        env=process_env({**stack.env, "COLUMNS": str(columns)}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_tables_show_whole_ids_at_80_columns(stack: Stack, fake_runtime: FakeRuntime) -> None:
    stack.env.update(WEBHOOKS)
    # The runtime answers 503 until the job is dead-lettered (1 + 3 retries, or more attempts
    # if a loaded machine let a lease lapse: a recovered attempt spends no retry).
    fake_runtime.fail_next.extend([Fault.status(503)] * RUNTIME_DOWN_FAULTS)
    with WebhookReceiver() as receiver:
        stack.worker()
        stack.ops_worker()
        client = stack.client()
        job = client.submit({**CHAT, "webhook_url": receiver.url()}).id
        assert client.wait(job, timeout=60).status is JobStatus.DEAD_LETTERED
        receiver.wait_for(1)
        assert eventually(
            lambda: [d.status for d in list_deliveries(client.store.engine)] == ["succeeded"],
            timeout=10,
        )
        endpoint = add_endpoint(client.store, stack.settings, tenant="acme", url=receiver.url())

    [letter] = list_dead_letters(client.store)
    [delivery] = list_deliveries(client.store.engine)
    tables = {
        ("dlq", "list"): [letter.id, job],
        ("webhooks", "deliveries"): [delivery.id, delivery.event_id, job],
        ("webhooks", "endpoints", "list"): [endpoint.endpoint.id],
    }
    for command, ids in tables.items():
        shown = genq(stack, *command).stdout
        for ident in ids:
            assert len(ident) >= 32
            assert ident in shown, f"genq {' '.join(command)} cut {ident}:\n{shown}"


def test_requeue_all_says_how_many(stack: Stack, fake_runtime: FakeRuntime) -> None:
    nothing = genq(stack, "dlq", "requeue", "--all")
    assert nothing.stderr.strip().splitlines()[-1] == "0 requeued"
    assert nothing.stdout == ""

    fake_runtime.fail_next.extend([Fault.status(503)] * RUNTIME_DOWN_FAULTS)
    stack.worker()
    client = stack.client()
    job = client.submit(CHAT).id
    assert client.wait(job, timeout=60).status is JobStatus.DEAD_LETTERED
    fake_runtime.fail_next.clear()  # the runtime is back
    one = genq(stack, "dlq", "requeue", "--all")
    assert one.stderr.strip().splitlines()[-1] == "1 requeued"
    assert json.loads(one.stdout)["job_id"] == job
    assert client.wait(job, timeout=30).status is JobStatus.SUCCEEDED
