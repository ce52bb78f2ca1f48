"""genq on RabbitMQ (GENQ_BROKER_URL=amqp://…): what differs from Redis, against a real broker.

The suites both brokers share (priority order, kill -9, poison and undecodable messages,
duplicate delivery) are parametrized in their own files (``both_brokers``); these are the
RabbitMQ-only behaviours: publisher confirms, the dead-letter exchange, the upgrade of queues
declared with other arguments (406), redelivery after a lost connection while the job's lease
is live, a job outliving the broker's consumer_timeout, and quorum queues.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest
from kombu import Connection, Exchange, Queue

from genq import constants as c
from genq.chunks import last_chunk
from genq.dead_letters import HEADER, list_dead_letters
from genq.dispatch import publish_job
from genq.fleet.backlog import Backlog
from genq.metrics import build_registry, render_metrics
from genq.rabbitmq import DEAD_LETTER_EXCHANGE, declare_topology
from producers import GenqClient
from producers.submission import new_job
from schemas import BrokerUnavailable, JobRequest, JobStatus
from schemas.validation import parse
from tests.fakes.runtime_server import FakeRuntime, Fault
from tests.integration.conftest import Stack
from tests.integration.gateway.conftest import GatewayStarter
from tests.integration.test_dead_letters import genq
from tests.support import eventually, free_port
from tests.support.brokers import BrokerProbe
from tests.support.rabbitmq import RabbitMQBroker, RabbitMQServer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("broker", ["rabbitmq"], indirect=True),
]

CHAT = {"messages": [{"role": "user", "content": "x"}]}
LANE = f"{c.QUEUE_PREFIX}interactive"


def _vhost(stack: Stack) -> str:
    return unquote(urlsplit(stack.settings.effective_broker_url).path.lstrip("/")) or "/"


def _queues(broker: RabbitMQBroker, vhost: str) -> dict[str, dict[str, object]]:
    out = broker.rabbitmqctl(
        "list_queues", "-p", vhost, "name", "arguments", "type", "--formatter", "json", "-q"
    )
    rows = json.loads(out or "[]")
    return {
        row["name"]: {"type": row["type"], **{a[0]: a[2] for a in row["arguments"]}} for row in rows
    }


def test_queues_are_priority_queues_with_a_dead_letter_exchange(
    stack: Stack, rabbitmq_broker: RabbitMQBroker
) -> None:
    stack.worker()
    queues = _queues(rabbitmq_broker, _vhost(stack))
    for name in (LANE, f"{c.QUEUE_PREFIX}batch", c.WEBHOOK_QUEUE, c.MAINTENANCE_QUEUE):
        assert queues[name] == {
            "type": "classic",
            "x-max-priority": 10,
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": c.DEAD_LETTER_QUEUE,
        }, name
    assert c.DEAD_LETTER_QUEUE in queues  # declared at the worker's start, bound to the DLX


def _cap_lane_at_two(stack: Stack, rabbitmq_broker: RabbitMQBroker) -> None:
    """A policy: the lane's queue holds 2 messages and refuses (nacks) further publishes."""
    rabbitmq_broker.rabbitmqctl(
        "set_policy",
        "-p",
        _vhost(stack),
        "--apply-to",
        "queues",
        "cap",
        f"^{LANE}$",
        '{"max-length": 2, "overflow": "reject-publish"}',
    )
    assert eventually(lambda: _policy_applied(rabbitmq_broker, _vhost(stack), "cap"), timeout=30)


def test_a_publish_the_broker_refuses_raises_with_confirms(
    stack: Stack, rabbitmq_broker: RabbitMQBroker
) -> None:
    """RabbitMQ nacks a publish to a full queue (overflow reject-publish): only publisher
    confirms turn that into an error; without them the job would be accepted and lost."""
    # A direct publish: dispatched, a refused release stays in the backlog (the next test).
    stack.env["GENQ_FLEET_DISPATCH"] = "false"
    client = stack.client()
    client.submit(CHAT)  # declares the lane's queue
    _cap_lane_at_two(stack, rabbitmq_broker)
    probe = BrokerProbe(stack.settings, rabbitmq_broker)
    assert eventually(lambda: _try_fill(client, 2, probe), timeout=30)
    with pytest.raises(BrokerUnavailable):
        client.submit(CHAT)
    # The refused job was not kept as accepted: the store holds only the two queued ones.
    assert len(client.store.list(tenant=None, limit=100).records) == 2


def test_a_release_the_broker_refuses_stays_in_the_backlog(
    stack: Stack, rabbitmq_broker: RabbitMQBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """Dispatched (the default), the dispatcher publishes a job once it holds a slot for it.
    A publish the broker nacks is not lost either: confirms make it an error, and the job goes
    back to its place in the backlog, released once the broker takes messages again."""
    stack.env["GENQ_RUNTIME_SLOTS"] = "4"  # a slot for every job: only the broker refuses
    client = stack.client()
    first = client.submit(CHAT).id  # declares the lane's queue
    _cap_lane_at_two(stack, rabbitmq_broker)
    probe = BrokerProbe(stack.settings, rabbitmq_broker)
    second = client.submit(CHAT).id
    assert probe.ready(LANE) == 2
    backlog = Backlog(client.redis)
    assert backlog.size() == 0
    with caplog.at_level(logging.WARNING, logger="genq.fleet.dispatcher"):
        refused = client.submit(CHAT).id  # accepted: the refusal is the dispatcher's
    assert "fleet dispatch paused" in caplog.text, "no release was refused: proves nothing"
    assert probe.ready(LANE) == 2
    assert backlog.size() == 1
    rabbitmq_broker.rabbitmqctl("clear_policy", "-p", _vhost(stack), "cap")
    stack.worker()
    for job in (first, second, refused):
        assert client.wait(job, timeout=30).status is JobStatus.SUCCEEDED


def _policy_applied(broker: RabbitMQBroker, vhost: str, policy: str) -> bool:
    out = broker.rabbitmqctl(
        "list_queues", "-p", vhost, "name", "policy", "--formatter", "json", "-q"
    )
    return any(row.get("policy") == policy for row in json.loads(out or "[]"))


def _try_fill(client: GenqClient, wanted: int, probe: BrokerProbe) -> bool:
    """The policy applies within moments: submit until the queue holds ``wanted``."""
    if probe.ready(LANE) >= wanted:
        return True
    with contextlib.suppress(BrokerUnavailable):
        client.submit(CHAT)
    return probe.ready(LANE) >= wanted


def test_a_message_the_broker_rejects_is_dead_lettered_through_the_exchange(stack: Stack) -> None:
    app = stack.client().app
    with app.connection_for_write() as conn:  # the queues and exchanges a worker declares
        declare_topology(conn, app.conf.task_queues)
    probe = BrokerProbe(stack.settings)
    probe.push_raw("genq.batch", b'{"not": "a task"}', content_type="application/json")
    with Connection(stack.settings.effective_broker_url) as conn:
        channel = conn.channel()
        message = channel.basic_get("genq.batch", no_ack=False)
        assert message is not None
        channel.basic_reject(message.delivery_tag, requeue=False)  # the broker decides
        channel.close()
    assert eventually(lambda: probe.ready(c.DEAD_LETTER_QUEUE) == 1, timeout=10)
    death = _dead_letter_headers(stack)["x-death"][0]
    assert death["reason"] == "rejected" and death["queue"] == "genq.batch"
    # The sweep gives it a row in genq's index, as genq's own dead letters have.
    stack.beat()
    client = stack.client()
    assert eventually(lambda: len(list_dead_letters(client.store)) == 1, timeout=30)
    (letter,) = list_dead_letters(client.store)
    assert letter.reason == "broker_rejected" and letter.job_id is None
    assert letter.raw_body == b'{"not": "a task"}'
    assert eventually(lambda: probe.ready(c.DEAD_LETTER_QUEUE) == 1, timeout=10)
    assert _dead_letter_headers(stack)[HEADER] == letter.id  # the broker copy is genq's now


def _dead_letter_headers(stack: Stack) -> dict[str, Any]:
    """The headers of the first message on genq.dead_letter, which stays there."""
    with Connection(stack.settings.effective_broker_url) as conn:
        channel = conn.channel()
        message = channel.basic_get(c.DEAD_LETTER_QUEUE, no_ack=False)
        assert message is not None
        headers = dict(message.headers or {})
        channel.basic_reject(message.delivery_tag, requeue=True)
        channel.close()
    return headers


def test_queue_declared_with_other_arguments_is_upgraded_keeping_its_messages(
    stack: Stack, rabbitmq_broker: RabbitMQBroker
) -> None:
    """A lane queue as an older deployment declared it (no priority, no dead-letter exchange,
    a direct exchange): RabbitMQ answers genq's declaration with 406. The worker refuses to
    start with the way out; `genq broker upgrade` redeclares it with its messages kept. Sent
    before fleet dispatch, they carry no slot: the worker puts them in the backlog to run."""
    client = stack.client()
    with Connection(stack.settings.effective_broker_url) as conn:
        old = Queue(LANE, Exchange(LANE, type="direct"), routing_key=LANE, durable=True)
        old(conn.default_channel).declare()
    request = parse(JobRequest, CHAT)
    records = [
        client.store.create(new_job(stack.settings, request, "default"))[0] for _ in range(3)
    ]
    for record in records:  # as the older deployment published them: straight to the broker
        publish_job(
            client.app,
            stack.settings,
            job_id=record.id,
            kind=record.kind,
            tenant=record.tenant,
            lane=record.lane,
            priority=record.priority,
            declare=False,
        )
    probe = BrokerProbe(stack.settings, rabbitmq_broker)
    assert probe.ready(LANE) == 3
    refused = stack.start_genq(["worker"], stack.env, name="refused")
    assert eventually(lambda: not refused.running, timeout=60)
    assert "genq broker upgrade" in refused.log_text()
    out = genq(stack, "broker", "upgrade")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert {"queue": LANE, "moved": 3} in lines
    assert _queues(rabbitmq_broker, _vhost(stack))[LANE]["x-max-priority"] == 10
    assert genq(stack, "broker", "upgrade").stdout == ""  # nothing left to upgrade
    stack.worker()
    for record in records:
        assert client.wait(record.id, timeout=30).status is JobStatus.SUCCEEDED


def test_redelivery_after_a_lost_connection_runs_the_job_once(
    stack: Stack, fake_runtime: FakeRuntime, rabbitmq_broker: RabbitMQBroker
) -> None:
    """RabbitMQ redelivers a message the moment its consumer's connection drops. The job is
    still running under a live lease: whichever worker gets the redelivery must skip it, and
    the job completes once."""
    tokens = [f"t{i} " for i in range(60)]
    fake_runtime.configure(tokens=tokens, token_delay_seconds=0.25)  # 15 s
    workers = [stack.worker("--concurrency", "1", name=f"w{i}") for i in range(2)]
    client = stack.client()
    job = client.submit(CHAT).id
    # Generating (its first chunks streamed) when the connections drop.
    assert eventually(lambda: last_chunk(client.redis, job) is not None, timeout=30)
    rabbitmq_broker.rabbitmqctl(
        "close_all_connections", "--vhost", _vhost(stack), "test: connection lost"
    )
    done = client.wait(job, timeout=90)
    assert done.status is JobStatus.SUCCEEDED
    assert done.result is not None and done.result.text == "".join(tokens)
    received = sum(w.log_text().count(f"genq.generate[{job}] received") for w in workers)
    # Once at least; a redelivery that reached a worker as it too reconnected comes again.
    assert received >= 2, "the broker did not redeliver the message: the test proves nothing"
    history = client.get(job, history=True).history or []
    assert [h.to_status for h in history] == [
        JobStatus.QUEUED,
        JobStatus.RUNNING,
        JobStatus.SUCCEEDED,
    ]
    assert fake_runtime.stats()["job_requests_seen"] == 1
    assert all(w.running for w in workers)


@pytest.fixture
def short_timeout_rabbitmq(tmp_path: Path) -> RabbitMQServer:
    """A private RabbitMQ whose consumer_timeout is 2 s, checked every half second."""
    server = RabbitMQServer(
        tmp_path / "rabbitmq-short-timeout",
        config=["consumer_timeout = 2000"],
        advanced="[{rabbit, [{channel_tick_interval, 500}]}].",
    )
    with server:
        yield server  # type: ignore[misc]


def test_a_job_outlives_a_short_consumer_timeout(
    stack: Stack, fake_runtime: FakeRuntime, short_timeout_rabbitmq: RabbitMQServer
) -> None:
    """RabbitMQ 3.10 closes the channel of a delivery unacked for longer than consumer_timeout
    (celery#6760). The worker warned at start; the job runs to its end once, the message the
    broker redelivers is skipped while the lease is live, and the worker goes on.

    The LLM worker's own pool (prefork: acks go out from the consumer's thread). With
    ``--pool threads`` the worker wedged in about one run of three: after the reconnect, the
    finished job's ack from a pool thread and the consumer's prefetch restore (``basic_qos``)
    share one py-amqp connection, and the consumer waited for a QosOk forever (docs/brokers.md,
    known limits)."""
    stack.env["GENQ_BROKER_URL"] = short_timeout_rabbitmq.url()
    stack.env["GENQ_RABBITMQ_CONSUMER_TIMEOUT_SECONDS"] = "2"
    fake_runtime.configure(tokens=[f"t{i} " for i in range(24)], token_delay_seconds=0.25)
    worker = stack.worker("--concurrency", "2")
    assert "consumer_timeout" in worker.log_text()  # the warning at start
    client = stack.client()
    job = client.submit(CHAT).id
    done = client.wait(job, timeout=90)
    assert done.status is JobStatus.SUCCEEDED
    assert done.result is not None and done.result.text == "".join(f"t{i} " for i in range(24))
    assert "PRECONDITION_FAILED" in worker.log_text() or "timed out" in worker.log_text(), (
        "the broker never timed the delivery out: the test proves nothing"
    )
    assert fake_runtime.stats()["job_requests_seen"] == 1
    history = client.get(job, history=True).history or []
    assert [h.to_status for h in history].count(JobStatus.RUNNING) == 1
    fake_runtime.configure(token_delay_seconds=0)
    after = client.submit(CHAT).id
    assert client.wait(after, timeout=60).status is JobStatus.SUCCEEDED


def test_quorum_queues_run_jobs_and_retries(
    stack: Stack, fake_runtime: FakeRuntime, rabbitmq_broker: RabbitMQBroker
) -> None:
    """GENQ_RABBITMQ_QUORUM=true: the lanes are quorum queues; a job that fails once is
    retried after its backoff (Celery's native delayed delivery) and succeeds."""
    stack.env["GENQ_RABBITMQ_QUORUM"] = "true"
    stack.worker()
    queues = _queues(rabbitmq_broker, _vhost(stack))
    assert queues[LANE]["type"] == "quorum" and "x-max-priority" not in queues[LANE]
    fake_runtime.fail_next.extend([Fault.status(503)])
    client = stack.client()
    job = client.submit(CHAT).id
    done = client.wait(job, timeout=60)
    assert done.status is JobStatus.SUCCEEDED and done.attempts == 2


def test_metrics_count_each_queues_messages(stack: Stack) -> None:
    # A slot for each job, so the dispatcher releases all three into the broker's lane.
    stack.env["GENQ_RUNTIME_SLOTS"] = "3"
    client = stack.client()
    client.submit_many([CHAT] * 3)  # no worker: they wait in the lane
    registry, collector = build_registry(stack.settings)
    try:
        text = render_metrics(registry).decode()
    finally:
        collector.close()
    assert f'genq_queue_messages{{queue="{LANE}"}} 3.0' in text
    assert 'genq_component_up{component="broker"} 1.0' in text


def test_a_command_says_at_once_when_rabbitmq_is_unreachable(stack: Stack) -> None:
    stack.env["GENQ_BROKER_URL"] = f"amqp://guest:secret@127.0.0.1:{free_port()}/genq"
    out = genq(stack, "dlq", "requeue", "--all")
    assert out.returncode != 0
    error = json.loads(out.stderr.strip().splitlines()[-1])["error"]
    assert error["code"] == "broker_unavailable" and "RabbitMQ" in error["message"]
    assert "secret" not in out.stderr


def test_the_gateway_is_ready_only_with_rabbitmq_and_runs_jobs_through_it(stack: Stack) -> None:
    stack.worker()
    starter = GatewayStarter(stack)
    try:
        gateway = starter()
        ready = httpx.get(f"{gateway.url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["broker"]["detail"].startswith("rabbitmq answers")
        api = gateway.client(gateway.key())
        job = api.post("/v1/jobs", json=CHAT).json()
        done = api.get(f"/v1/jobs/{job['id']}/wait", params={"timeout": 30}, timeout=40)
        assert done.json()["status"] == "succeeded", done.text
        lost = starter(broker_url=f"amqp://guest:guest@127.0.0.1:{free_port()}/genq")
        unready = httpx.get(f"{lost.url}/readyz", timeout=10)
        assert unready.status_code == 503
        assert "rabbitmq" in unready.json()["checks"]["broker"]["detail"]
    finally:
        starter.close()
