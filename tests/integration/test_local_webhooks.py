"""The local stack's webhook story as docs/webhooks.md tells it: ``genq up`` generates the
signing secret, ``GENQ_WEBHOOK_ALLOW`` lets a receiver on loopback through where the job is
accepted and where it is delivered, and ``genq submit --webhook-url`` then just works."""

from __future__ import annotations

import subprocess
import sys

import pytest

from genq.cli.stack.plan import plan_stack
from schemas import JobStatus
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.integration.conftest import Stack
from tests.support.environment import process_env, settings_from_env

pytestmark = pytest.mark.integration

# What docs/webhooks.md says to set for `genq up` and in the shell that submits.
LOOPBACK_ALLOWED = {"GENQ_WEBHOOK_ALLOW": "127.0.0.1"}


def submit(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "genq", "submit", "Say hello", *args],
        env=process_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_genq_submit_webhook_on_the_local_stack(stack: Stack) -> None:
    settings = settings_from_env(stack.env)
    local = plan_stack(settings, set(), environ={}).env  # the env `genq up` gives its processes
    stack.env.update({**local, **LOOPBACK_ALLOWED})
    secret = local["GENQ_WEBHOOK_SECRET"]
    with WebhookReceiver() as receiver:
        stack.worker()
        stack.ops_worker()
        job = submit(stack.env, "--webhook-url", receiver.url())
        own_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        other = submit(
            stack.env, "--webhook-url", receiver.url("/own"), "--webhook-secret", own_secret
        )
        hits = {hit.path: hit for hit in receiver.wait_for(2)}
    event = hits["/hook"].verify(secret)
    assert event["type"] == "job.succeeded" and event["data"]["id"] == job
    assert hits["/own"].verify(own_secret)["data"]["id"] == other
    client = stack.client()
    assert client.get(job).status is JobStatus.SUCCEEDED
    assert "webhook_secret" not in client.get(other).request
